/* fake_port.c - see fake_port.h. */
#include "fake_port.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static int f_begin(void *ctx, const struct tcpota_offer_info *img)
{
    struct fake_port *fp = ctx;
    if (img->size > FAKE_SLOT) return TCPOTA_ERR_NOSPC;
    fp->open = 1; fp->ended = 0; fp->wpos = 0; fp->size = img->size; fp->begins++;
    return 0;
}

static int f_resume(void *ctx, const struct tcpota_offer_info *img, uint32_t off)
{
    struct fake_port *fp = ctx;
    if (off % TCPOTA_SECTOR_SIZE || off > img->size) return TCPOTA_ERR_INVAL;
    fp->open = 1; fp->ended = 0; fp->wpos = off; fp->size = img->size; fp->resumes++;
    fp->resumed_at = off;
    return 0;
}

static int f_write(void *ctx, const uint8_t *data, size_t len)
{
    struct fake_port *fp = ctx;
    size_t i;
    fp->writes++;
    if (fp->fail_write_at && fp->writes == fp->fail_write_at) return TCPOTA_ERR_IO;
    if (!fp->open || fp->wpos + len > fp->size) return TCPOTA_ERR_RANGE;
    for (i = 0; i < len; i++) {
        uint32_t a = fp->wpos + (uint32_t)i;
        if (a % TCPOTA_SECTOR_SIZE == 0) memset(fp->slot + a, 0xff, TCPOTA_SECTOR_SIZE);
        if (fp->slot[a] != 0xff) return TCPOTA_ERR_IO; /* NOR: program over data */
        fp->slot[a] = data[i];
    }
    fp->wpos += (uint32_t)len;
    return 0;
}

static int f_read(void *ctx, uint32_t off, uint8_t *buf, size_t len)
{
    struct fake_port *fp = ctx;
    if (off > FAKE_SLOT || len > FAKE_SLOT - off) return TCPOTA_ERR_RANGE;
    memcpy(buf, fp->slot + off, len);
    return 0;
}

static int f_end(void *ctx)
{
    struct fake_port *fp = ctx;
    if (!fp->open || fp->wpos != fp->size) return TCPOTA_ERR_STATE;
    if (fp->fail_end) return fp->fail_end;
    fp->ended = 1;
    return 0;
}

static int f_abort(void *ctx) { ((struct fake_port *)ctx)->open = 0; return 0; }

static int f_set_boot(void *ctx)
{
    struct fake_port *fp = ctx;
    if (!fp->ended) return TCPOTA_ERR_STATE;
    if (fp->fail_set_boot) return fp->fail_set_boot < 0 ? fp->fail_set_boot : TCPOTA_ERR_IO;
    fp->boot_set = 1;
    return 0;
}

/* 1 when this call is the power cut (fake_port.h, cut_at). */
static int cut_now(struct fake_port *fp)
{
    return fp->cut_at && ++fp->cut_ops == fp->cut_at;
}

/* A mark of the running image (valid or invalid): it ends its pending state. */
static int f_mark(struct fake_port *fp, int *calls)
{
    if (cut_now(fp)) return TCPOTA_ERR_IO;
    (*calls)++;
    fp->boot.pending = 0;
    return 0;
}

static int f_valid(void *ctx) { struct fake_port *fp = ctx; return f_mark(fp, &fp->valid_calls); }
static int f_invalid(void *ctx) { struct fake_port *fp = ctx; return f_mark(fp, &fp->invalid_calls); }
static int f_boot_state(void *ctx, struct tcpota_boot_state *st) { *st = ((struct fake_port *)ctx)->boot; return 0; }

static int find(struct fake_port *fp, const char *key)
{
    int i;
    for (i = 0; i < FAKE_KEYS; i++)
        if (fp->kv[i].used && strcmp(fp->kv[i].key, key) == 0) return i;
    return -1;
}

static int f_kv_get(void *ctx, const char *key, uint8_t *buf, size_t cap)
{
    struct fake_port *fp = ctx;
    int i = find(fp, key);
    if (i < 0) return TCPOTA_ERR_NOENT;
    if (fp->kv[i].len > cap) return TCPOTA_ERR_NOSPC;
    memcpy(buf, fp->kv[i].val, fp->kv[i].len);
    return (int)fp->kv[i].len;
}

static int f_kv_set(void *ctx, const char *key, const uint8_t *buf, size_t len)
{
    struct fake_port *fp = ctx;
    int i = find(fp, key);
    if (cut_now(fp)) return TCPOTA_ERR_IO;
    if (len > sizeof(fp->kv[0].val) || strlen(key) > 15) return TCPOTA_ERR_NOSPC;
    for (int j = 0; i < 0 && j < FAKE_KEYS; j++)
        if (!fp->kv[j].used) i = j;
    if (i < 0) return TCPOTA_ERR_NOSPC;
    strcpy(fp->kv[i].key, key);
    memcpy(fp->kv[i].val, buf, len);
    fp->kv[i].len = len;
    fp->kv[i].used = 1;
    fp->kv_sets++;
    return 0;
}

static int f_kv_erase(void *ctx, const char *key)
{
    struct fake_port *fp = ctx;
    int i = find(fp, key);
    if (cut_now(fp)) return TCPOTA_ERR_IO;
    if (fp->fail_erase_key && strcmp(key, fp->fail_erase_key) == 0) return TCPOTA_ERR_IO;
    if (i < 0) return TCPOTA_ERR_NOENT;
    fp->kv[i].used = 0;
    return 0;
}

static int f_sha_begin(void *ctx) { return crypto_hash_sha256_init(((struct fake_port *)ctx)->sha_state) ? TCPOTA_ERR_IO : 0; }
static int f_sha_update(void *ctx, const uint8_t *d, size_t n) { return crypto_hash_sha256_update(((struct fake_port *)ctx)->sha_state, d, n) ? TCPOTA_ERR_IO : 0; }
static int f_sha_finish(void *ctx, uint8_t out[32]) { return crypto_hash_sha256_final(((struct fake_port *)ctx)->sha_state, out) ? TCPOTA_ERR_IO : 0; }

static int f_ed25519(void *ctx, const uint8_t sig[64], const uint8_t *msg, size_t len, const uint8_t pk[32])
{
    (void)ctx;
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0 ? 0 : TCPOTA_ERR_BADSIG;
}

static int f_hmac(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *msg, size_t len, uint8_t out[32])
{
    crypto_auth_hmacsha256_state st;
    (void)ctx;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, msg, len);
    crypto_auth_hmacsha256_final(&st, out);
    return 0;
}

void fake_port_init(struct fake_port *fp)
{
    memset(fp, 0, sizeof(*fp));
    memset(fp->slot, 0xff, sizeof(fp->slot));
    fp->sha_state = malloc(sizeof(crypto_hash_sha256_state));
    fp->port.ctx = fp;
    fp->port.slot_size = FAKE_SLOT;
    fp->port.ota_begin = f_begin;
    fp->port.ota_resume = f_resume;
    fp->port.ota_write = f_write;
    fp->port.ota_read = f_read;
    fp->port.ota_end = f_end;
    fp->port.ota_abort = f_abort;
    fp->port.set_boot = f_set_boot;
    fp->port.mark_valid = f_valid;
    fp->port.mark_invalid = f_invalid;
    fp->port.boot_state = f_boot_state;
    fp->port.kv_get = f_kv_get;
    fp->port.kv_set = f_kv_set;
    fp->port.kv_erase = f_kv_erase;
    fp->port.sha256_begin = f_sha_begin;
    fp->port.sha256_update = f_sha_update;
    fp->port.sha256_finish = f_sha_finish;
    fp->port.ed25519_verify = f_ed25519;
    fp->port.hmac_sha256 = f_hmac;
}

void fake_port_free(struct fake_port *fp) { free(fp->sha_state); fp->sha_state = NULL; }
