/* serve_config.h - `tcpota serve --config FILE`: the flags of a config file
 * (the installed service's /etc/tcpota/tcpota.conf, docs/operations.md). */
#ifndef TCPOTA_SERVE_CONFIG_H
#define TCPOTA_SERVE_CONFIG_H

/* The arguments of `tcpota serve` with a config file's flags put in front. */
struct serve_config_args {
    int argc;
    char **argv;  /* argv[0], the file's flags, then the command line's */
    char **owned; /* the strings read from the file (freed with argv) */
    int nowned;   /* argv[1..nowned] are the file's */
    unsigned *lines; /* lines[i]: the file's line of owned[i] */
    const char *path; /* the file, or NULL */
    unsigned mode;    /* its permission bits (a secret in it others can read is warned about) */
};

/* When argv (argv[0] is "serve") holds `--config FILE`, reads FILE and
 * builds in *out argv[0], then one "--flag" (or "--flag=VALUE", so that a
 * value is taken as written) per line of FILE, then argv[1..]: the command
 * line comes later, and since the option
 * parser keeps the last value given, a flag on the command line wins over
 * the file (repeatable flags such as --pubkey add up). Without --config,
 * *out is argc/argv as given. FILE must be a regular file: one
 * "flag value" or "flag" (a switch) per line, the long option name without
 * its "--", blank lines and lines starting with '#' skipped. Returns 0, or
 * 2 (the exit code) after printing "FILE:LINE: what is wrong; what to do".
 * out->path and out->mode then name FILE and its permission bits (a secret
 * in it that other users can read is warned about: a --db password).
 * Free *out with serve_config_free() in either case. */
int serve_config_load(int argc, char **argv, struct serve_config_args *out);

/* How `tcpota serve` takes arg ("--name"), from the one list of its
 * options a config file may hold: 1 with a value, 0 as a switch, -1 not
 * at all (--config, --help and -h are the parser's own and not listed). */
int serve_option(const char *arg);

/* Frees what serve_config_load() allocated; out may be zeroed. */
void serve_config_free(struct serve_config_args *out);

#endif
