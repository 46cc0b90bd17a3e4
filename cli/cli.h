/* cli.h - the `tcpota` command's subcommands and small shared helpers. */
#ifndef TCPOTA_CLI_H
#define TCPOTA_CLI_H

#include <stddef.h>
#include <stdint.h>

/* `tcpota serve ...`; returns the process exit code. */
int cmd_serve(int argc, char **argv);
/* `tcpota device ...` and `tcpota device status ...`; returns the exit code. */
int cmd_device(int argc, char **argv);

/* Splits "HOST:PORT" (or "[v6]:PORT") into host and port. Returns 0, or -1
 * with a message on stderr naming `what`. */
int cli_hostport(const char *s, const char *what, char *host, size_t hcap, uint16_t *port);
/* Parses a whole unsigned number in [min, max]; returns 0 or -1 with a message. */
int cli_number(const char *s, const char *what, unsigned long long min, unsigned long long max,
               unsigned long long *out);
/* Monotonic milliseconds. */
uint64_t cli_now_ms(void);

#endif
