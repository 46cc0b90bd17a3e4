/* keys.h - key files and manifests for the CLI: `tcpota keygen`, `sign`,
 * `verify`, and the loaders `serve` and `device` use.
 *
 * Files are one line of text: "tcpota-ed25519-public v1 <64 hex>" for a
 * public key, "tcpota-ed25519-secret v1 <128 hex>" (mode 0600) for a
 * private key, "tcpota-secret v1 <hex>" for a device secret. A secrets file
 * for the server holds lines "<device id> <hex secret>". */
#ifndef TCPOTA_CLI_KEYS_H
#define TCPOTA_CLI_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* `tcpota keygen`, `tcpota sign`, `tcpota verify`: each parses its own
 * arguments and returns the process exit code (0 done, 1 a check or a write
 * failed, 2 bad arguments or unusable input files). */
int cmd_keygen(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);

/* Keys a list of trusted keys holds at most: serve's --pubkey, device's
 * --trust (and what a device folder keeps), verify's --pubkey. */
#define CLI_MAX_KEYS 8
/* A number macro's digits, for a usage text. */
#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)

/* Loads a public key file into pk. Returns 0 or -1 with a message that
 * names what is wrong: not a regular file (a FIFO is refused at once, never
 * waited on), empty, another kind of key, damaged. */
int cli_load_pubkey(const char *path, uint8_t pk[32]);
/* Loads a device secret file (1..cap bytes), the same way; also warns (see
 * cli_warn_if_exposed) when its group or others may read it. Returns its
 * length or -1. */
int cli_load_secret(const char *path, uint8_t *out, size_t cap);
/* Reads a whole small regular file (at most max bytes) into a malloc'd
 * buffer; what names it in messages (the option it came from). Returns 0 or
 * -1 with a message. */
int cli_read_file(const char *path, const char *what, size_t max, uint8_t **buf, size_t *len);
/* The same from an open fd (path and what name it in messages); *buf ends
 * with a NUL after its *len bytes. */
int cli_read_fd(int fd, const char *path, const char *what, size_t max, uint8_t **buf, size_t *len);
/* Checks image FILE against manifest bytes with the given trusted keys (any
 * of them; nkeys 0 = the key inside the manifest). Prints what is wrong.
 * Returns 0 when it verifies. image NULL: the manifest's signature only,
 * for a caller that checks the bytes it loads itself (quiet then). */
int cli_check_manifest(const char *image, const uint8_t *man, size_t man_len,
                       const uint8_t (*keys)[32], size_t nkeys, int quiet);
/* Checks a version or model given as option opt of `tcpota cmd`: 1 to
 * TCPOTA_MAX_NAME printable ASCII characters, what a manifest and the
 * protocol carry. Returns 0, or -1 after saying so. */
int cli_check_label(const char *cmd, const char *opt, const char *v);

#endif
