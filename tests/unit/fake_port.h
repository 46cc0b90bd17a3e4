/* fake_port.h - an in-memory struct tcpota_port for unit tests of the core.
 * Keeps ESP-IDF's semantics: sequential writes erase a sector when they
 * reach it, writing over non-erased bytes fails, records survive a "reboot"
 * (a new session on the same fake), and any call can be made to fail. */
#ifndef FAKE_PORT_H
#define FAKE_PORT_H

#include "tcpota/port.h"

#define FAKE_SLOT (256u * 1024u)
#define FAKE_KEYS 8

struct fake_port {
    struct tcpota_port port;
    uint8_t slot[FAKE_SLOT];
    uint32_t wpos, size;
    int open, ended, boot_set, begins, resumes;
    uint32_t resumed_at;
    struct { char key[16]; uint8_t val[64]; size_t len; int used; } kv[FAKE_KEYS];
    int kv_sets;
    struct tcpota_boot_state boot;
    int valid_calls, invalid_calls;
    int fail_write_at; /* 1-based ota_write call that fails; 0: never */
    int writes;
    int fail_set_boot;          /* set_boot returns it when < 0, else TCPOTA_ERR_IO */
    int fail_end;               /* ota_end returns it when < 0 */
    const char *fail_erase_key; /* kv_erase of this key returns TCPOTA_ERR_IO */
    /* A power cut: the cut_at-th (1-based) kv_set, kv_erase, mark_valid or
     * mark_invalid from now on is not done and returns TCPOTA_ERR_IO; 0:
     * never. cut_ops counts them. */
    int cut_at, cut_ops;
    void *sha_state;
};

/* Sets up the fake and fills fp->port. */
void fake_port_init(struct fake_port *fp);
void fake_port_free(struct fake_port *fp);

#endif
