/* cli.h - the `tcpota` command's subcommands and small shared helpers. */
#ifndef TCPOTA_CLI_H
#define TCPOTA_CLI_H

#include <sys/types.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h> /* strchr, in V6_OPEN */

/* `tcpota serve ...`; returns the process exit code. */
int cmd_serve(int argc, char **argv);
/* `tcpota device ...` and `tcpota device status ...`; returns the exit code. */
int cmd_device(int argc, char **argv);
/* `tcpota device status` (cli/device_status.c); argv[0] is "status". */
int cmd_device_status(int argc, char **argv);

/* The fleet commands, clients of a fleet server's control API (docs/api.md):
 * `tcpota image ...` (cmd_image.c), `tcpota rollout ...` (cmd_rollout.c),
 * `tcpota device list|show|set|secret|retry|rm ...` (cmd_fleet_device.c),
 * `tcpota summary` (cmd_summary.c). Each returns the exit code: 0 done, 1 the server refused or is unreachable, 2
 * usage. */
int cmd_image(int argc, char **argv);
int cmd_rollout(int argc, char **argv);
int cmd_fleet_device(int argc, char **argv);
int cmd_summary(int argc, char **argv);
/* 1 when `tcpota device WORD ...` is a fleet command (list, show, set,
 * secret) rather than the host device simulator. */
int cli_is_fleet_device(const char *word);
/* Those words, as a message lists them (cli_is_fleet_device holds the same). */
#define CLI_FLEET_DEVICE_SUBS "list, show, set, secret, retry or rm"

/* What messages start with: "tcpota" until main() knows the command, then
 * the command ("tcpota verify", "tcpota device", ...), so that a shared
 * helper's message names the command it came from. */
extern const char *cli_prog;
/* Flushes stdout; a failure's errno is kept for main's last word on it
 * (cli_stdout_errno: 0 none yet). Returns 0, or -1. */
int cli_flush(void);
extern int cli_stdout_errno;
/* 1 when the standard output was closed at start (main put /dev/full
 * there, so that no file or socket takes its descriptor). */
extern int cli_stdout_closed;
/* Why writing to stdout failed with err, for a message. */
const char *cli_stdout_why(int err);
/* Prints "<cli_prog>: " and then fmt on stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Splits "HOST:PORT" (or "[v6]:PORT") into host and port. Returns 0, or -1
 * with a message on stderr naming `what`; listen: an address to listen on
 * (for what to suggest when the host is left out), else one to connect to. */
int cli_hostport(const char *s, const char *what, int listen, char *host, size_t hcap,
                 uint16_t *port);
/* The value of an option that takes one, at argv[*i] (`name` as the
 * parser knows it, e.g. "--id"; `metavar` names the value for the message,
 * e.g. "ID", or NULL). "--name=VALUE" gives VALUE as it is: anything, ""
 * and "--x" included. Else the value is the next argument and *i is
 * advanced past it, unless that argument starts with "--": then it is the
 * next option, the value forgotten ("--id --model m" would make the id
 * "--model"). Returns the value, or NULL with a message in why (cap bytes,
 * no "tcpota CMD: " before it) naming the option, the one it would have
 * swallowed and how to give such a value on purpose: "--id needs a value:
 * --id ID (got the option --model; if --model is meant as the value, write
 * --id=--model)". Every parser of the CLI takes its values here, and
 * prints why in its own usage style (exit 2). */
const char *cli_opt_value(int argc, char **argv, int *i, const char *name, const char *metavar,
                          char *why, size_t cap);
/* Room for cli_opt_value's message. */
#define CLI_OPT_WHY 512

/* The brackets around host before ":PORT" in a URL or a message that
 * echoes --listen: an IPv6 address takes them ("[::1]:8070"), others not.
 * printf("%s%s%s:%u", V6_OPEN(h), h, V6_CLOSE(h), port). */
#define V6_OPEN(host) (strchr((host), ':') ? "[" : "")
#define V6_CLOSE(host) (strchr((host), ':') ? "]" : "")

/* 1 when s is a negative whole number ("-5"; not "-0"): a number, but
 * never one an option of tcpota takes, said so rather than "not a number". */
int cli_negative(const char *s);
/* Parses a whole unsigned number in [min, max]; returns 0 or -1 with a
 * message: negative, not a number, or out of range, with the range. */
int cli_number(const char *s, const char *what, unsigned long long min, unsigned long long max,
               unsigned long long *out);
/* A size in bytes: a whole number, or one followed by K, M or G (KiB,
 * MiB, GiB: powers of 1024; "64M" is 67108864), in [min, max] bytes;
 * returns 0 or -1 with a message as cli_number's. */
int cli_size(const char *s, const char *what, unsigned long long min, unsigned long long max,
             unsigned long long *out);
/* Opens an existing file for reading and requires a regular file, so that
 * a FIFO, a directory, a device or a socket given where a file belongs is
 * an error at once instead of a hang (the open itself does not block).
 * `what` names the argument in the message, e.g. "--auth-file" (NULL:
 * "file"): "tcpota serve: --auth-file: x is not a regular file (it is a FIFO);
 * give the path of a file". Returns the descriptor (blocking,
 * close-on-exec) or -1 after printing what is wrong. */
int cli_open_regular(const char *path, const char *what);
/* The same, as a stdio stream ("r"); NULL after printing what is wrong. */
FILE *cli_fopen_regular(const char *path, const char *what);
/* For a file holding a secret (a private key, a device secret), open as fd:
 * warns on stderr when its group or others may read or write it, with the
 * chmod that fixes it. Only warns: the caller goes on. Returns 1 when it
 * warned, else 0. */
int cli_warn_if_exposed(const char *path, int fd);
/* After a device's flash files failed to open (damaged, unreadable): what
 * to do, for `tcpota device` and `tcpota device status`. */
#define FLASH_DAMAGED_HINT                                                                  \
    "the device's flash files cannot be used as they are: restore them from a backup, or " \
    "start a new device with --init in an empty directory (it boots its factory image)"
/* After a device's flash files were found missing in a directory that is
 * not empty: what to do, for `tcpota device` and `tcpota device status`. */
#define FLASH_MISSING_HINT "restore it, or start a new device with --init in an empty directory"
/* After "DIR": a folder that is not empty and holds no file of a device. */
#define FLASH_NOT_A_DEVICE                                                                  \
    "holds no device, and files that are not a device's: give the --flash directory of a " \
    "device, or a new or empty one for a new device"
/* Checks a directory argument (`what`, e.g. "--flash"): 0 when path is a
 * directory, or when it does not exist and missing_ok; else -1 after a
 * message naming what path is instead ("f.bin is not a directory (it is a
 * regular file)") or that it does not exist. */
int cli_check_dir(const char *path, const char *what, int missing_ok);

/* The lock file `tcpota device` holds in its --flash directory while it
 * runs (cli/device.c), as `tcpota serve` holds one in --data. */
#define FLASH_LOCK_FILE "tcpota.lock"

/* 1 when dir exists and holds nothing but "." and "..", and FLASH_LOCK_FILE:
 * a device that found no device there has taken the lock already, and the
 * directory is still the empty one that --init needs. */
int cli_dir_empty(const char *dir);
/* 1 when dir exists and holds no entry at all, a lock file neither. */
int cli_dir_holds_nothing(const char *dir);

/* What a file that is not a regular file is, for a message: "a directory",
 * "a FIFO", "a character device", ... */
const char *cli_file_kind(mode_t m);

/* 1 when version has no place in the order devices are offered by
 * (tcpota/version.h), else 0. */
int cli_version_unordered(const char *version);

/* Warns on stderr, as "tcpota CMD: warning: ...", when version has no
 * place in the order devices are offered by (tcpota/version.h): servers
 * then offer it to no device unless --allow-downgrade. */
void cli_warn_unordered(const char *cmd, const char *version);

/* Removes dir and everything in it (symbolic links as links, never what
 * they point to). Only for a directory this run created and no other
 * program uses: a start that failed undoes what it made. Returns 0, or a
 * negative errno of the first removal that failed (the rest is kept). */
int cli_remove_tree(const char *dir);
/* The same, but dir itself is kept: for a directory that was there, empty,
 * before this run (everything in it is then this run's). */
int cli_empty_tree(const char *dir);

/* s as one word of a command line a user can paste into a POSIX shell,
 * into buf (cap >= 8): s itself when every character is safe there, else
 * in single quotes ('my model', a ' as '\''); "''" for "". Returns buf, cut
 * short (and terminated) when it does not fit. */
const char *cli_shell_word(const char *s, char *buf, size_t cap);
/* s for a message that repeats what was given: s itself when short, else
 * its start and "... (N characters)" (a trial's 100,000-character
 * argument came back as a 100 KB line). One of CLI_CUT_SLOTS buffers of
 * its own, taken in turn: at most that many in one message. */
#define CLI_CUT_SLOTS 4
#define CLI_CUT_KEEP 64u
const char *cli_cut(const char *s);
/* "OPT VALUE" for a command line to paste (VALUE as cli_shell_word gives
 * it), or "OPT=VALUE" when VALUE starts with "--", the only form in which
 * cli_opt_value takes such a value. Into buf (cap >= 64); returns buf. */
const char *cli_shell_opt(const char *opt, const char *value, char *buf, size_t cap);
/* Monotonic milliseconds. */
uint64_t cli_now_ms(void);

#endif
