/* trust_esp.c - trusted keys from text and the device secret from NVS
 * (see tcpota_esp_trust.h). */
#include "tcpota_esp_trust.h"

#include <string.h>

#include "nvs.h"

static int is_sep(char c)
{
    return c == ' ' || c == ',' || c == '\t' || c == '\n' || c == '\r';
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* One token of exactly 2 * TCPOTA_PUBKEY_LEN hex digits into out. */
static int key_from_hex(const char *tok, size_t len, uint8_t out[TCPOTA_PUBKEY_LEN])
{
    if (len != 2u * TCPOTA_PUBKEY_LEN) {
        return TCPOTA_ERR_INVAL;
    }
    for (size_t i = 0; i < TCPOTA_PUBKEY_LEN; i++) {
        int hi = hex_val(tok[2 * i]), lo = hex_val(tok[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return TCPOTA_ERR_INVAL;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int tcpota_esp_parse_keys(const char *text, uint8_t (*keys)[TCPOTA_PUBKEY_LEN], size_t cap,
                          size_t *bad)
{
    size_t n = 0;
    const char *p = text ? text : "";

    for (;;) {
        uint8_t k[TCPOTA_PUBKEY_LEN];
        size_t len = 0;
        int rc;

        while (is_sep(*p)) {
            p++;
        }
        if (!*p) {
            return (int)n;
        }
        while (p[len] && !is_sep(p[len])) {
            len++;
        }
        rc = key_from_hex(p, len, k);
        if (rc == 0 && n >= cap) {
            rc = TCPOTA_ERR_NOSPC;
        }
        if (rc < 0) {
            if (bad) {
                *bad = n;
            }
            return rc;
        }
        memcpy(keys[n++], k, TCPOTA_PUBKEY_LEN);
        p += len;
    }
}

int tcpota_esp_load_secret(tcpota_esp_port_t *ep, uint8_t *buf, size_t cap)
{
    size_t len = cap;
    esp_err_t err;

    if (!ep || !ep->nvs_open || !buf || cap == 0) {
        return TCPOTA_ERR_INVAL;
    }
    err = nvs_get_blob(ep->nvs, TCPOTA_ESP_KEY_SECRET, buf, &len);
    if (err == ESP_OK && len > 0 && len <= cap) {
        return (int)len;
    }
    memset(buf, 0, cap);
    if (err == ESP_ERR_NVS_NOT_FOUND) {
        return 0;
    }
    if (err == ESP_OK) {
        return TCPOTA_ERR_RANGE; /* an empty blob: misprovisioned */
    }
    ep->last_err = err;
    ep->last_call = "nvs_get_blob";
    return tcpota_esp_err(err);
}
