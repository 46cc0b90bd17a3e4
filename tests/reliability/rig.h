/*
 * rig.h - one emulated device and one server session joined in memory.
 *
 * The reliability suites drive whole update cycles with the real code:
 * the core's device session on the POSIX port (an ESP32 in a directory,
 * with power-cut injection), the core's server session, and the POSIX
 * "bootloader". No socket and no clock: a connection is a loop that moves
 * the device's frames to the server session and the server's frames to the
 * device, and can cut the downstream after any byte or flip any byte of
 * it. What the suites check (bootable whole image, byte-exact result,
 * bytes fetched again) is read from the same flash files a reboot sees.
 *
 * Every function returns 0 on success or a negative value; RIG_CUT means
 * the flash lost power (the fault fired) and the device must be rebooted.
 */
#ifndef TCPOTA_RIG_H
#define TCPOTA_RIG_H

#include <stddef.h>
#include <stdint.h>

#include "posix_port.h"
#include "tcpota/device.h"
#include "tcpota/server.h"

/* The device lost power: reboot it (rig_close, then rig_boot). */
#define RIG_CUT (-1000)

/* One image the server can offer. */
struct rig_image {
    uint8_t *bytes;
    uint32_t size;
    char version[16];
    struct tcpota_srv_image desc;
};

/* How one connection is disturbed. Zero: not at all. */
struct rig_conn_opts {
    size_t cut;       /* 0: none; else stop after this many downstream bytes */
    long flip_down;   /* -1: none; else XOR 0x20 into that downstream byte */
    long flip_up;     /* -1: none; else XOR 0x20 into that upstream byte */
    size_t piece;     /* largest slice handed to tcpota_dev_input (0: 1500) */
};

/* What one connection did. */
struct rig_conn_result {
    int dev_rc;          /* last device input result (< 0: it ended the link) */
    int srv_rc;          /* last server input result */
    size_t down, up;     /* bytes the device and the server consumed */
    uint32_t start;      /* where the server started DATA (from HELLO) */
    uint8_t offered;     /* the server offered the image */
};

struct rig {
    char dir[256];
    struct tcpota_posix_dev pd;
    struct tcpota_port port;
    struct tcpota_posix_slot_info running;
    struct tcpota_dev dev;
    uint8_t drx[4096 + 8], dtx[512];
    int open, session;
    int healthy;
    uint32_t ack_iv;
    struct tcpota_flash_fault fault;
    int fault_armed; /* attach `fault` at every open until it fires */

    const struct rig_image *img; /* what the server offers */
    uint16_t chunk;
    struct tcpota_srv srv;
    uint8_t srx[1024], stx[TCPOTA_SRV_TX_MIN];

    /* Downstream bytes of the last connection, as sent (before a flip). */
    uint8_t *wire;
    size_t wire_cap, wire_len;

    /* What the server learnt from HELLO reports and COMPLETE. */
    unsigned reports_confirmed_new; /* CONFIRMED for the offered image */
    unsigned reports_other;
    unsigned completes;
    unsigned complete_failures; /* COMPLETE with an error: image refused */
    unsigned clean_errors; /* undisturbed connections that ended in an error */
    unsigned connections, boots;
    /* Images a boot may run; every boot checks the running slot is one. */
    const struct rig_image *ok[2];
    int n_ok;
    int last_which; /* index in ok[] of what the last boot ran */
    /* While an image is being received: its next byte (the session's pos
     * after the last input call), kept when the link or the power drops. */
    uint32_t rx_pos;
    uint8_t rx_active;
    char err[256];
};

/* Fills `im` with `size` pseudo-random bytes from `seed`, its SHA-256 and
 * the version string. Returns 0 or -1 (out of memory). */
int rig_image_make(struct rig_image *im, uint32_t size, uint32_t seed, const char *version);

/* Frees the bytes of an image. */
void rig_image_free(struct rig_image *im);

/* Prepares a rig for the device directory `dir` (created if needed).
 * wire_cap: room for one connection's downstream. Returns 0 or -1. */
int rig_init(struct rig *r, const char *dir, size_t wire_cap, uint16_t chunk, uint32_t ack_iv);

/* Closes the device files and frees the wire. */
void rig_free(struct rig *r);

/* Creates a fresh device (factory image 0.0.0) with slots of slot_size.
 * Returns 0 or -1. */
int rig_create(struct rig *r, uint32_t slot_size);

/* A reset: opens the flash (with the fault attached while it is armed),
 * runs the bootloader and the health check (tcpota_dev_boot with
 * r->healthy; a rejection is a second boot), and starts a session for
 * the image that runs. With r->n_ok set, it checks right after the
 * bootloader that the running slot holds, byte for byte, one of r->ok[]
 * and hashes to the SHA-256 otadata recorded for it (r->last_which tells
 * which). Returns 0, RIG_CUT or -1 (r->err says why). */
int rig_boot(struct rig *r);

/* Power off: closes the device files (whatever state they are in). */
void rig_close(struct rig *r);

/* One connection to a server session offering r->img. Returns 0 when it
 * ran (see *res for how it ended), RIG_CUT or -1. */
int rig_connect(struct rig *r, const struct rig_conn_opts *o, struct rig_conn_result *res);

/* Boots and connects until the device runs r->img, confirmed, with its
 * report delivered (or until max_steps boots and connections). A power
 * cut returns RIG_CUT at once. Returns 0, RIG_CUT or -1. */
int rig_run(struct rig *r, unsigned max_steps);

/* Checks that the device runs `im` confirmed (not pending), byte-exact in
 * its slot. Needs a booted rig. Returns 0 or -1. */
int rig_check_final(struct rig *r, const struct rig_image *im);

/* The device's four flash files, copied into memory. */
struct rig_snapshot {
    uint8_t *data[4];
    size_t len[4];
};

/* Copies the device's files (the device should be closed). Returns 0 or
 * -1; on -1, rig_snapshot_free() still releases what was taken. */
int rig_snapshot_take(struct rig *r, struct rig_snapshot *s);

/* Closes the device and writes the snapshot back over its files. Returns
 * 0 or -1. */
int rig_snapshot_restore(struct rig *r, const struct rig_snapshot *s);

/* Frees a snapshot's copies. Safe on a zeroed or already freed one. */
void rig_snapshot_free(struct rig_snapshot *s);

/* Splits the last connection's downstream into frames: fills ends[] with
 * the offset just past each whole frame and returns their count (at most
 * cap). */
size_t rig_frame_ends(const struct rig *r, size_t *ends, size_t cap);

#endif /* TCPOTA_RIG_H */
