/* auth.c - device secrets, answers to the CHALLENGE and their backoff (see
 * auth.h for the rule). */
#include "auth.h"
#include "key_tags.h"
#include "text.h" /* text_bom */

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_LEN 512u

/* ---- the secrets file ------------------------------------------------ */

void auth_free_secrets(struct tcpota_serve_secret *s, size_t n)
{
    if (s) sodium_memzero(s, n * sizeof(*s));
    free(s);
}

/* Parses one non-comment line into *s. Returns 0, or -1 after printing. */
static int parse_line(const char *line, const char *path, size_t lineno,
                      struct tcpota_serve_secret *s)
{
    char id[128], hex[200], more[2];
    const char *tag;
    size_t bin = 0;
    int rc = -1, fields;

    memset(s, 0, sizeof(*s));
    fields = sscanf(line, "%127s %199s %1s", id, hex, more);
    /* A key file's line ("<tag> v1 <hex>", key_tags.h) is none of a
     * secrets file, whose ids may start alike ("tcpota-gw-01"). */
    tag = fields == 3 && strcmp(hex, KEY_TAG_VERSION) == 0 ? key_tag_of(id, strlen(id)) : NULL;
    if (tag && strcmp(tag, KEY_TAG_DEVICE) == 0) {
        fprintf(stderr, "tcpota serve: %s:%zu: this is a device's secret file (tcpota keygen "
                        "--device-secret), not a secrets file; the server's line for it is "
                        "\"<device id> <its hex>\": echo \"ID $(cut -d' ' -f3 %s)\" >> secrets\n",
                path, lineno, path);
        sodium_memzero(hex, sizeof(hex));
        return -1;
    }
    if (tag) {
        /* a signing key or a public key given by mistake (a trial) */
        fprintf(stderr, "tcpota serve: %s:%zu: this is a %s file (tcpota keygen --out), not a "
                        "secrets file (\"<device id> <hex secret>\" per line)\n",
                path, lineno, tag);
        sodium_memzero(hex, sizeof(hex));
        return -1;
    }
    if (fields < 2 || strlen(id) > TCPOTA_MAX_STR) {
        fprintf(stderr, "tcpota serve: %s:%zu: expected \"<device id> <hex secret>\" (an id of "
                        "1..%u bytes)\n", path, lineno, TCPOTA_MAX_STR);
        sodium_memzero(hex, sizeof(hex));
        return -1;
    }
    if (fields == 3) {
        /* "dev 7 <hex>" or "<id> <hex> # note": the secret must not be
         * guessed from the wrong field, nor the rest dropped unsaid. */
        fprintf(stderr, "tcpota serve: %s:%zu: more than \"<device id> <hex secret>\" on the "
                        "line; ids here hold no spaces, and a comment takes a line of its own "
                        "(starting with #)\n", path, lineno);
        sodium_memzero(hex, sizeof(hex));
        return -1;
    }
    for (size_t i = 0; id[i]; i++) {
        if ((unsigned char)id[i] < 0x21 || (unsigned char)id[i] > 0x7e) {
            /* Device ids are printable ASCII (docs/protocol.md): this one
             * could never match, and its bytes are not for a terminal. */
            fprintf(stderr, "tcpota serve: %s:%zu: the device id holds byte 0x%02x; ids are "
                            "printable ASCII: is this a secrets file (\"<device id> <hex "
                            "secret>\" per line)?\n",
                    path, lineno, (unsigned)(unsigned char)id[i]);
            return -1;
        }
    }
    memcpy(s->id, id, strlen(id) + 1);
    /* Never echo the secret itself. */
    if (sodium_hex2bin(s->secret, sizeof(s->secret), hex, strlen(hex), NULL, &bin, NULL) != 0 ||
        bin > AUTH_MAX_SECRET_LEN) {
        fprintf(stderr, "tcpota serve: %s:%zu: the secret of %s is not hex of at most %u bytes\n",
                path, lineno, id, AUTH_MAX_SECRET_LEN);
    } else if (bin < AUTH_MIN_SECRET_LEN) {
        fprintf(stderr, "tcpota serve: %s:%zu: the secret of %s has %zu bytes; at least %u are "
                        "needed to resist guessing (make one with tcpota keygen --device-secret)\n",
                path, lineno, id, bin, AUTH_MIN_SECRET_LEN);
    } else {
        s->len = (uint8_t)bin;
        rc = 0;
    }
    sodium_memzero(hex, sizeof(hex));
    return rc;
}

static int by_id(const void *x, const void *y)
{
    return strcmp(((const struct tcpota_serve_secret *)x)->id,
                  ((const struct tcpota_serve_secret *)y)->id);
}

/* A device with two secrets would authenticate with either: refuse. */
static int find_duplicate(struct tcpota_serve_secret *v, size_t n, const char *path)
{
    size_t i;

    if (n < 2) {
        return 0; /* qsort(NULL, 0, ...) is undefined: an empty file at a reload */
    }
    qsort(v, n, sizeof(*v), by_id);
    for (i = 1; i < n; i++) {
        if (strcmp(v[i - 1].id, v[i].id) == 0) {
            fprintf(stderr, "tcpota serve: %s: device %s appears twice; keep one line\n", path,
                    v[i].id);
            return -1;
        }
    }
    return 0;
}

int auth_read_secrets(FILE *f, const char *path, int allow_empty, struct tcpota_serve_secret **out,
                      size_t *n)
{
    char line[LINE_MAX_LEN];
    size_t cap = 0, lineno = 0, bom;
    struct tcpota_serve_secret *v = NULL;

    *out = NULL;
    *n = 0;
    for (;;) {
        size_t end = sizeof(line) - 1;

        /* Filled first: the last byte fgets wrote (its NUL) is then the last
         * that is not 0xff, and a NUL before it was in the file, where
         * strlen() would have cut the line short without a word. */
        memset(line, 0xff, sizeof(line));
        if (!fgets(line, sizeof(line), f)) break;
        lineno++;
        while (end > 0 && (unsigned char)line[end] == 0xff) end--;
        if (strlen(line) != end) {
            fprintf(stderr, "tcpota serve: %s line %zu holds a NUL byte; write it as \"<device"
                            " id> <hex secret>\" alone\n", path, lineno);
            goto bad;
        }
        if (lineno == 1 && (bom = text_bom(line, strlen(line))) != 0) {
            memmove(line, line + bom, strlen(line) - bom + 1);
        }
        if (line[0] == '#' || strspn(line, " \t\r\n") == strlen(line)) continue;
        if (*n == cap) {
            struct tcpota_serve_secret *nv;
            if (cap == AUTH_MAX_SECRETS) {
                fprintf(stderr, "tcpota serve: %s: more than %u secrets\n", path, AUTH_MAX_SECRETS);
                goto bad;
            }
            cap = cap ? (cap * 2 < AUTH_MAX_SECRETS ? cap * 2 : AUTH_MAX_SECRETS) : 16;
            if (!(nv = realloc(v, cap * sizeof(*v)))) {
                fprintf(stderr, "tcpota serve: %s: out of memory\n", path);
                goto bad;
            }
            v = nv;
        }
        if (parse_line(line, path, lineno, &v[*n]) < 0) goto bad;
        (*n)++;
    }
    sodium_memzero(line, sizeof(line));
    if (ferror(f)) {
        fprintf(stderr, "tcpota serve: cannot read %s\n", path);
        goto bad;
    }
    if (*n == 0 && !allow_empty) {
        fprintf(stderr, "tcpota serve: --auth-file %s has no secrets: add lines \"<device id> "
                        "<hex secret>\" (tcpota keygen --device-secret)\n", path);
        goto bad;
    }
    if (find_duplicate(v, *n, path) < 0) goto bad;
    *out = v;
    return 0;
bad:
    sodium_memzero(line, sizeof(line));
    auth_free_secrets(v, cap);
    *n = 0;
    return -1;
}

/* ---- judging an answer ----------------------------------------------- */

static int sorted_by_id(const struct tcpota_serve_secret *s, size_t n)
{
    size_t i;
    for (i = 1; i < n; i++) {
        if (strcmp(s[i - 1].id, s[i].id) >= 0) return 0;
    }
    return 1;
}

/* The index of id in a's secrets, or -1. */
static long find_id(const struct auth *a, const char *id)
{
    size_t i, lo = 0, hi = a->nsecrets;

    if (!a->sorted) {
        for (i = 0; i < a->nsecrets; i++) {
            if (strcmp(a->secrets[i].id, id) == 0) return (long)i;
        }
        return -1;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(a->secrets[mid].id, id);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

int auth_has(const struct auth *a, const char *id)
{
    return find_id(a, id) >= 0;
}

void auth_forgive(struct auth *a, const char *id)
{
    long i = find_id(a, id);

    if (i >= 0) {
        memset(&a->by_id[i], 0, sizeof(a->by_id[i]));
    }
}

int auth_init(struct auth *a, const struct tcpota_serve_secret *secrets, size_t n)
{
    memset(a, 0, sizeof(*a));
    a->secrets = secrets;
    a->nsecrets = n;
    a->sorted = sorted_by_id(secrets, n);
    if (n && !(a->by_id = calloc(n, sizeof(*a->by_id)))) {
        return -1;
    }
    return 0;
}

int auth_rebind(struct auth *a, const struct tcpota_serve_secret *secrets, size_t n)
{
    struct auth_record *by_id = n ? calloc(n, sizeof(*by_id)) : NULL;
    size_t i;

    if (n && !by_id) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        long j = find_id(a, secrets[i].id);
        if (j >= 0) by_id[i] = a->by_id[j];
    }
    free(a->by_id);
    a->by_id = by_id;
    a->secrets = secrets;
    a->nsecrets = n;
    a->sorted = sorted_by_id(secrets, n);
    return 0;
}

void auth_free(struct auth *a)
{
    free(a->by_id);
    memset(a, 0, sizeof(*a));
}

static void forget_if_stale(struct auth_record *r, double now)
{
    if (r->failures && now - r->last > AUTH_FORGET_S) {
        memset(r, 0, sizeof(*r));
    }
}

/* The record of addr; with create, a new one in the stalest slot. */
static struct auth_record *addr_record(struct auth *a, const char *addr, double now, int create)
{
    struct auth_addr_record *stalest = &a->by_addr[0];
    unsigned i;

    for (i = 0; i < AUTH_ADDR_SLOTS; i++) {
        struct auth_addr_record *s = &a->by_addr[i];
        if (s->addr[0] && strcmp(s->addr, addr) == 0) {
            forget_if_stale(&s->r, now);
            return &s->r;
        }
        if (!s->addr[0] || (stalest->addr[0] && s->r.last < stalest->r.last)) stalest = s;
    }
    if (!create) return NULL;
    memset(stalest, 0, sizeof(*stalest));
    snprintf(stalest->addr, sizeof(stalest->addr), "%s", addr);
    return &stalest->r;
}

/* Counts one failure: after `free_failures`, each doubles the wait. */
static void record_failure(struct auth_record *r, double now, unsigned free_failures,
                           unsigned max_wait)
{
    unsigned k, wait = 0;

    r->failures++;
    r->last = now;
    if (r->failures > free_failures) {
        k = r->failures - free_failures - 1;
        wait = k < 16 && (1u << k) < max_wait ? 1u << k : max_wait;
    }
    r->until = now + wait;
}

static unsigned wait_left(const struct auth_record *r, double now)
{
    double w = r->until - now;
    return w > 0 ? (unsigned)(w + 0.999) : 0;
}

/* 1 when mac is the HMAC of the authentication message under s. */
static int mac_matches(const struct tcpota_serve_secret *s, const uint8_t *nonce,
                       const uint8_t *binding, const uint8_t *mac)
{
    uint8_t msg[TCPOTA_AUTH_MSG_MAX], want[AUTH_MAC_LEN];
    crypto_auth_hmacsha256_state st;
    int n = tcpota_auth_message(nonce, binding, (const uint8_t *)s->id, strlen(s->id), msg,
                                sizeof(msg));
    int ok;

    if (n < 0) {
        return 0;
    }
    /* The streaming API takes keys of any length, as the device's does. */
    crypto_auth_hmacsha256_init(&st, s->secret, s->len);
    crypto_auth_hmacsha256_update(&st, msg, (unsigned long long)n);
    crypto_auth_hmacsha256_final(&st, want);
    ok = sodium_memcmp(want, mac, AUTH_MAC_LEN) == 0;
    sodium_memzero(&st, sizeof(st));
    sodium_memzero(want, sizeof(want));
    return ok;
}

static enum auth_verdict decide(struct auth_result *r, enum auth_verdict v,
                                const struct auth_record *rec, double now)
{
    r->verdict = v;
    r->failures = rec ? rec->failures : 0;
    r->wait_s = rec ? wait_left(rec, now) : 0;
    return v;
}

enum auth_verdict auth_judge(struct auth *a, const char *id, const char *addr,
                             const uint8_t nonce[TCPOTA_NONCE_LEN], const uint8_t *binding,
                             const uint8_t *mac, double now, struct auth_result *r)
{
    struct auth_record *ar = addr_record(a, addr, now, 0), *ir = NULL;
    const struct tcpota_serve_secret *s = NULL;
    long i = find_id(a, id);

    if (i >= 0) {
        s = &a->secrets[i];
        ir = &a->by_id[i];
        forget_if_stale(ir, now);
    }
    if (ir && ir->until > now) {
        return decide(r, AUTH_ID_WAITING, ir, now);
    }
    /* A waiting address may still authenticate a known device whose own
     * record is clean: its neighbours behind a NAT must not lock it out. */
    if (ar && ar->until > now && (!ir || ir->failures)) {
        return decide(r, AUTH_ADDR_WAITING, ar, now);
    }
    if (s && mac_matches(s, nonce, binding, mac)) {
        return decide(r, AUTH_OK, ir, now);
    }
    ar = addr_record(a, addr, now, 1);
    record_failure(ar, now, AUTH_ADDR_FREE_FAILURES, AUTH_ADDR_MAX_WAIT_S);
    if (!s) {
        return decide(r, AUTH_UNKNOWN_ID, ar, now);
    }
    record_failure(ir, now, 0, AUTH_ID_MAX_WAIT_S);
    return decide(r, AUTH_WRONG_ANSWER, ir, now);
}

const char *auth_verdict_reason(enum auth_verdict v)
{
    switch (v) {
    case AUTH_OK: return "authenticated";
    case AUTH_WRONG_ANSWER: return "wrong answer to the challenge (wrong secret, or a replay)";
    case AUTH_UNKNOWN_ID:
        return "unknown device (no secret for this id: --auth-file, or in fleet mode "
               "tcpota device secret ID)";
    case AUTH_ID_WAITING: return "this device id failed recently";
    case AUTH_ADDR_WAITING: return "this address failed too often";
    }
    return "?";
}

int auth_verdict_error(enum auth_verdict v)
{
    return v == AUTH_ID_WAITING || v == AUTH_ADDR_WAITING ? TCPOTA_ERR_BUSY : TCPOTA_ERR_DENIED;
}

const char *auth_verdict_message(enum auth_verdict v)
{
    switch (v) {
    case AUTH_OK: return "";
    case AUTH_WRONG_ANSWER: return "authentication refused: check the device secret";
    case AUTH_UNKNOWN_ID: return "authentication refused: the server has no secret for this device id";
    case AUTH_ID_WAITING:
        return "authentication not checked: this device id failed recently (a wrong secret, "
               "here or elsewhere); retry after the time given";
    case AUTH_ADDR_WAITING:
        return "authentication not checked: too many failures from this address; retry after "
               "the time given";
    }
    return "authentication refused";
}

/* Whether slot a goes before slot b when a new id needs one: a free slot
 * first (the first of them), else the one refused longest ago. */
static int staler(const struct auth_refused_id *a, const struct auth_refused_id *b)
{
    if (!b->id[0]) return 0;
    return !a->id[0] || a->last < b->last;
}

void auth_refusal_note(struct auth_refusals *t, enum auth_refusal k, const char *id,
                       const char *addr, int64_t when)
{
    struct auth_refused_id *e = NULL, *stalest = &t->ids[0];
    size_t i;

    if ((unsigned)k >= AUTH_REFUSAL_KINDS) return;
    t->n[k]++;
    if (!id || !*id) return;
    for (i = 0; i < AUTH_REFUSED_IDS && !e; i++) {
        if (strcmp(t->ids[i].id, id) == 0) e = &t->ids[i];
        else if (staler(&t->ids[i], stalest)) stalest = &t->ids[i];
    }
    if (!e) {
        e = stalest;
        memset(e, 0, sizeof(*e));
        snprintf(e->id, sizeof(e->id), "%s", id);
        e->kind = (uint8_t)k;
    }
    snprintf(e->addr, sizeof(e->addr), "%s", addr ? addr : "");
    if (k != AUTH_REFUSED_NOT_CHECKED) {
        e->kind = (uint8_t)k; /* a wait keeps the failure that caused it */
    }
    e->count++;
    e->last = when;
}

uint64_t auth_refusals_total(const struct auth_refusals *t)
{
    uint64_t sum = 0;
    size_t k;

    for (k = 0; k < AUTH_REFUSAL_KINDS; k++) {
        sum += t->n[k];
    }
    return sum;
}

void auth_refusal_forget(struct auth_refusals *t, const char *id)
{
    size_t i;

    if (!id || !*id) return;
    for (i = 0; i < AUTH_REFUSED_IDS; i++) {
        if (strcmp(t->ids[i].id, id) == 0) {
            memset(&t->ids[i], 0, sizeof(t->ids[i]));
        }
    }
}

enum auth_refusal auth_refusal_of(enum auth_verdict v)
{
    switch (v) {
    case AUTH_WRONG_ANSWER: return AUTH_REFUSED_WRONG;
    case AUTH_UNKNOWN_ID: return AUTH_REFUSED_UNKNOWN;
    case AUTH_ID_WAITING:
    case AUTH_ADDR_WAITING: return AUTH_REFUSED_NOT_CHECKED;
    case AUTH_OK: break;
    }
    return AUTH_REFUSED_NO_PROOF;
}

const char *auth_refusal_name(enum auth_refusal k)
{
    static const char *const names[AUTH_REFUSAL_KINDS] = {"no-proof", "wrong-secret", "unknown-id",
                                                          "not-checked"};

    return (unsigned)k < AUTH_REFUSAL_KINDS ? names[k] : "?";
}
