/* main.c - the `tcpota` command: dispatch to subcommands. */
#include "cli.h"
#include "keys.h"
#include "tcpota/tcpota.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "tcpota %s - firmware updates over TCP for ESP32-class devices\n"
            "\n"
            "usage:\n"
            "  tcpota serve [--listen HOST:PORT] [--version V] [options] FILE\n"
            "  tcpota device --server HOST:PORT --flash DIR [--id ID] [--model M] [options]\n"
            "  tcpota device status --flash DIR\n"
            "  tcpota keygen --out NAME | --device-secret --out FILE | --ticket-key --out FILE\n"
            "  tcpota sign --key NAME.key --version V --model M [--security-counter N]\n"
            "              [--out FILE.manifest] FILE\n"
            "  tcpota verify --pubkey NAME.pub [--manifest M] FILE\n"
            "  tcpota version\n"
            "\n"
            "fleet mode (clients of tcpota serve --data DIR's control API):\n"
            "  tcpota image add FILE [--manifest M] [--version V --model M] | list | rm ID\n"
            "  tcpota rollout create --image ID|VERSION --model M [--waves PCT,...] [...]\n"
            "  tcpota rollout list | show ID | pause ID | resume ID | cancel ID | open-wave ID\n"
            "  tcpota device list [--model M] [--state S] [--group G] [--id-prefix P] [--limit N]\n"
            "                     [--after ID]\n"
            "  tcpota device show ID | set ID --group G | secret ID [--out FILE] | retry ID\n"
            "                     | rm ID\n"
            "  tcpota summary       devices by state and version, failures, refused devices\n"
            "  common: --api URL (https://: --ca F), --token-file F or --data DIR (else TCPOTA_TOKEN),\n"
            "          --json\n"
            "\n"
            "`tcpota COMMAND --help` (or `tcpota help COMMAND`) lists every option of a command.\n",
            TCPOTA_VERSION_STRING);
}

/* The subcommands: each runs with argv[0] its own name. */
static const struct {
    const char *name, *prog;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"serve", "tcpota serve", cmd_serve},
    {"device", "tcpota device", cmd_device},
    {"image", "tcpota image", cmd_image},
    {"rollout", "tcpota rollout", cmd_rollout},
    {"summary", "tcpota summary", cmd_summary},
    {"keygen", "tcpota keygen", cmd_keygen},
    {"sign", "tcpota sign", cmd_sign},
    {"verify", "tcpota verify", cmd_verify},
};

/* The subcommand named name, or NULL. */
static int command_index(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(name, commands[i].name) == 0) return (int)i;
    }
    return -1;
}

/* rc of a command whose standard output was all written, else 1 and
 * said: a full disk or a closed stdout loses what was printed (a list a
 * script reads), so the exit status must not say 0. */
static int output_written(int rc)
{
    int err;

    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout) && !cli_stdout_errno) {
        return rc;
    }
    err = cli_stdout_errno ? cli_stdout_errno : errno; /* 0: the cause is gone */
    clearerr(stdout);
    if (err == EPIPE) {
        /* Its reader stopped reading (| head): what it wanted it had. The
         * API commands ignore SIGPIPE, which would end the others quietly. */
        return rc;
    }
    fprintf(stderr, "%s: cannot write to the standard output%s%s; what it printed is lost"
                    " (anything the command changed stands)\n", cli_prog,
            err || cli_stdout_closed ? ": " : "", err || cli_stdout_closed ? cli_stdout_why(err) : "");
    return rc ? rc : 1;
}

static int run_command(int i, int argc, char **argv)
{
    cli_prog = commands[i].prog; /* what shared helpers' messages start with */
    return commands[i].run(argc, argv);
}

static int is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* `tcpota version --help`, `tcpota help version`. */
static int version_help(void)
{
    printf("usage: tcpota version (or tcpota --version)\n"
           "  prints this program's version and the protocol version it speaks\n");
    return 0;
}

/* `tcpota help CMD` is `tcpota CMD --help`. */
static int help_command(const char *name)
{
    char help[] = "--help";
    char *argv[] = {(char *)name, help, NULL};
    int i = command_index(name);

    if (strcmp(name, "version") == 0) {
        return version_help();
    }
    if (strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (i < 0) {
        fprintf(stderr, "tcpota: help: unknown command '%s'; give one of those below\n\n", name);
        usage(stderr);
        return 2;
    }
    return run_command(i, 2, argv);
}

static int no_argument(char **argv)
{
    if (strcmp(argv[1], "help") == 0) {
        fprintf(stderr, "tcpota: help takes at most one COMMAND (got '%s' and '%s')\n", argv[2],
                argv[3]);
    } else {
        fprintf(stderr, "tcpota: %s takes no argument (got '%s')\n", argv[1], argv[2]);
    }
    return 2;
}

static int run(int argc, char **argv)
{
    int i;

    if (argc < 2) {
        fprintf(stderr, "tcpota: no command given; give one of those below\n\n");
        usage(stderr);
        return 2;
    }
    if ((i = command_index(argv[1])) >= 0) {
        return run_command(i, argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "help") == 0 && argc == 3) {
        return help_command(argv[2]);
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        if (argc == 3 && is_help(argv[2])) return version_help();
        if (argc > 2) return no_argument(argv);
        printf("tcpota %s (protocol %d)\n", TCPOTA_VERSION_STRING, TCPOTA_PROTO_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || is_help(argv[1])) {
        if (argc > 2) return no_argument(argv);
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "tcpota: unknown command '%s'; give one of those below\n\n", argv[1]);
    usage(stderr);
    return 2;
}

/* A standard descriptor closed at start (>&-) would be taken by the next
 * file or socket opened, and what is printed would go there (a trial: a
 * secret's JSON into the API's socket). stdin and stderr get /dev/null;
 * stdout /dev/full, so that what is printed fails and is said. */
static void std_fds_open(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) {
            continue;
        }
        int got = open(fd == 1 ? "/dev/full" : "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
        if (got < 0 && fd == 1) {
            got = open("/dev/null", O_WRONLY);
        }
        if (got >= 0 && got != fd) { /* a lower one was taken meanwhile: cannot be */
            close(got);
        }
        if (fd == 1) {
            cli_stdout_closed = 1;
        }
    }
}

int main(int argc, char **argv)
{
    std_fds_open();
    return output_written(run(argc, argv));
}
