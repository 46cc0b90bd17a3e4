/* main.c - the `tcpota` command: dispatch to subcommands. */
#include "cli.h"
#include "keys.h"
#include "tcpota/tcpota.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "tcpota %s - firmware updates over TCP for ESP32-class devices\n"
            "\n"
            "usage:\n"
            "  tcpota serve [--listen HOST:PORT] [--version V] [options] FILE\n"
            "  tcpota device --server HOST:PORT --flash DIR [--id ID] [--model M] [options]\n"
            "  tcpota device status --flash DIR\n"
            "  tcpota keygen --out NAME | --device-secret --out FILE\n"
            "  tcpota sign --key NAME.key --version V --model M [--security-counter N] FILE\n"
            "  tcpota verify --pubkey NAME.pub [--manifest M] FILE\n"
            "  tcpota version\n"
            "\n"
            "fleet mode (clients of tcpota serve --data DIR's control API):\n"
            "  tcpota image add FILE [--manifest M] [--version V --model M] | list | rm ID\n"
            "  tcpota rollout create --image ID|VERSION --model M [--waves 5,25,100] [...]\n"
            "  tcpota rollout list | show ID | pause ID | resume ID | cancel ID\n"
            "  tcpota device list [--model M] [--state S] [--group G] [--limit N]\n"
            "  tcpota device show ID | set ID --group G | secret ID [--out FILE]\n"
            "  common: --api URL, --token-file F (or TCPOTA_TOKEN, or --data DIR), --json\n"
            "\n"
            "`tcpota COMMAND --help` lists every option of a command.\n",
            TCPOTA_VERSION_STRING);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "tcpota: no command given; give one of those below\n\n");
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "serve") == 0) {
        cli_prog = "tcpota serve";
        return cmd_serve(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "device") == 0) {
        cli_prog = "tcpota device";
        return cmd_device(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "image") == 0) {
        cli_prog = "tcpota image";
        return cmd_image(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "rollout") == 0) {
        cli_prog = "tcpota rollout";
        return cmd_rollout(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "keygen") == 0) {
        cli_prog = "tcpota keygen";
        return cmd_keygen(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "sign") == 0) {
        cli_prog = "tcpota sign";
        return cmd_sign(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "verify") == 0) {
        cli_prog = "tcpota verify";
        return cmd_verify(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("tcpota %s (protocol %d)\n", TCPOTA_VERSION_STRING, TCPOTA_PROTO_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "tcpota: unknown command '%s'; give one of those below\n\n", argv[1]);
    usage(stderr);
    return 2;
}
