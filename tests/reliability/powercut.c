/* powercut.c - a power cut at every flash operation of a whole update.
 *
 * A device running image A (installed by a first, clean update) updates to
 * image B: download, read-back verify, switch slot, reboot, confirm, and a
 * reconnect that delivers the report. A first run counts the N flash
 * operations (sector erases and progs) of that cycle. Then, for every k in
 * 1..N, with and without tearing the k-th operation, the cycle runs again
 * from the same start and loses power right after operation k. The device
 * then reboots from the flash as it was left (no fault) and must:
 *   - boot A or B, whole, byte for byte, and hashing to what otadata
 *     recorded (checked at every boot, not only the first);
 *   - resume an interrupted download from its last checkpoint, fetching
 *     again at most one ack interval plus a sector;
 *   - finish on B, byte-exact and confirmed, with the report delivered.
 * Any other outcome fails the run (exit 1). Figures go to stdout.
 *
 * usage: tcpota-powercut [--size BYTES] [--chunk N] [--ack BYTES] [--no-tear]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "args.h"
#include "rig.h"
#include "../unit/tmpdir.h"

static int die(const struct rig *r, const char *what, unsigned k, int tear)
{
    fprintf(stderr, "powercut: FAIL %s (cut after op %u, tear %d): %s\n", what, k, tear, r->err);
    return 1;
}

int main(int argc, char **argv)
{
    uint32_t size = 131072, ack = 16384, slot;
    unsigned chunk = 1500;
    int tears = 2;
    char dir[] = "/tmp/tcpota-powercut.XXXXXX";
    struct rig_image a, b;
    struct rig r;
    struct rig_snapshot start;
    unsigned n_ops, runs = 0, boot_a = 0, boot_b = 0, in_download = 0, resumed = 0;
    unsigned rollbacks = 0, connections = 0;
    uint32_t max_refetch = 0;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        int got = rel_common_arg("powercut", argc, argv, &i, &size, &chunk, &ack);
        if (got == 0 && !strcmp(argv[i], "--no-tear")) {
            tears = 1;
        } else if (got == 0) {
            fprintf(stderr, "usage: %s [--size BYTES] [--chunk N] [--ack BYTES] [--no-tear]\n", argv[0]);
            return 2;
        }
        if (got < 0) return 2;
    }
    memset(&start, 0, sizeof(start));
    if (sodium_init() < 0 || !mkdtemp(dir)) {
        fprintf(stderr, "powercut: setup failed\n");
        return 1;
    }
    /* A is smaller than B, so a mix of the two could not hash to either. */
    if (rig_image_make(&a, size - size / 4 - 123, 1, "1.0.0") < 0 ||
        rig_image_make(&b, size, 2, "2.0.0") < 0 ||
        rig_init(&r, dir, (size_t)size * 2 + 262144, (uint16_t)chunk, ack) < 0) {
        fprintf(stderr, "powercut: setup failed\n");
        return 1;
    }
    slot = (size + 2 * TCPOTA_SECTOR_SIZE - 1) / TCPOTA_SECTOR_SIZE * TCPOTA_SECTOR_SIZE;

    /* The starting point: a device that runs A, confirmed. */
    r.img = &a;
    if (rig_create(&r, slot) < 0 || rig_run(&r, 10) < 0 || rig_check_final(&r, &a) < 0) {
        rc = die(&r, "installing A", 0, 0);
        goto out;
    }
    rig_close(&r);
    if (rig_snapshot_take(&r, &start) < 0) {
        rc = die(&r, "snapshot", 0, 0);
        goto out;
    }
    r.img = &b;
    r.ok[0] = &a;
    r.ok[1] = &b;
    r.n_ok = 2;

    /* Count the flash operations of a clean cycle A -> B. */
    memset(&r.fault, 0, sizeof(r.fault));
    r.fault_armed = 1;
    r.reports_confirmed_new = 0;
    if (rig_run(&r, 10) < 0 || rig_check_final(&r, &b) < 0 || r.reports_confirmed_new != 1 ||
        r.clean_errors) {
        rc = die(&r, "clean cycle", 0, 0);
        goto out;
    }
    n_ops = r.fault.ops;
    rig_close(&r);
    printf("powercut: image %u bytes over %u (chunk %u, ack %u): %u flash operations per cycle\n",
           size, a.size, chunk, ack, n_ops);

    for (int tear = 0; tear < tears; tear++) {
        for (unsigned k = 1; k <= n_ops; k++) {
            uint32_t pos = 0;
            int receiving;

            if (rig_snapshot_restore(&r, &start) < 0) {
                rc = die(&r, "restore", k, tear);
                goto out;
            }
            memset(&r.fault, 0, sizeof(r.fault));
            r.fault.cut_after = k;
            r.fault.tear = (uint8_t)tear;
            r.fault_armed = 1;
            r.reports_confirmed_new = r.reports_other = r.complete_failures = r.clean_errors = 0;
            r.connections = 0;
            int got = rig_run(&r, 10);
            if (got != RIG_CUT) {
                if (got == 0) snprintf(r.err, sizeof(r.err), "the cycle ended without the cut");
                rc = die(&r, "before the cut", k, tear);
                goto out;
            }
            runs++;
            receiving = r.rx_active;
            pos = r.rx_pos;
            /* Power off, then on again without the fault. */
            rig_close(&r);
            r.fault_armed = 0;
            if (rig_boot(&r) < 0) {
                rc = die(&r, "first boot after the cut", k, tear);
                goto out;
            }
            if (r.last_which == 0) boot_a++;
            else boot_b++;
            if (receiving && r.last_which == 0) { /* B still to fetch */
                uint32_t from = r.dev.resume.valid ? r.dev.resume.offset : 0;
                in_download++; /* and B not yet bootable */
                if (from > pos) {
                    snprintf(r.err, sizeof(r.err), "resume point %u past the bytes written %u", from, pos);
                    rc = die(&r, "resume", k, tear);
                    goto out;
                }
                if (pos - from > max_refetch) max_refetch = pos - from;
                if (pos - from > ack + TCPOTA_SECTOR_SIZE) {
                    snprintf(r.err, sizeof(r.err), "would fetch %u bytes again (written %u, resume at %u)",
                             pos - from, pos, from);
                    rc = die(&r, "refetch bound", k, tear);
                    goto out;
                }
                if (from) resumed++;
            }
            if (rig_run(&r, 20) < 0 || rig_check_final(&r, &b) < 0) {
                rc = die(&r, "finishing after the cut", k, tear);
                goto out;
            }
            if (r.clean_errors) {
                rc = die(&r, "after the cut", k, tear);
                goto out;
            }
            if (r.complete_failures) {
                snprintf(r.err, sizeof(r.err), "the device refused %u finished images", r.complete_failures);
                rc = die(&r, "integrity", k, tear);
                goto out;
            }
            if (r.reports_confirmed_new < 1) {
                snprintf(r.err, sizeof(r.err), "the server never got the CONFIRMED report");
                rc = die(&r, "report", k, tear);
                goto out;
            }
            if (r.reports_other) rollbacks++;
            connections += r.connections;
            rig_close(&r);
        }
    }
    printf("powercut: %u power cuts (%u ops x %d tear modes), nothing lost: after the cut %u booted A, "
           "%u booted B; %u cuts in the download (%u resumed from a checkpoint, at most %u bytes "
           "fetched again); %u cycles saw a rollback report before finishing; %u connections\n",
           runs, n_ops, tears, boot_a, boot_b, in_download, resumed, max_refetch, rollbacks,
           connections);
    rc = 0;
out:
    rig_snapshot_free(&start);
    rig_free(&r);
    rig_image_free(&a);
    rig_image_free(&b);
    tmpdir_remove(dir);
    return rc;
}
