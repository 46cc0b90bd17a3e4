/* serve.c - `tcpota serve`: argument parsing for the server in server/. */
#include "cli.h"
#include "server.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tcpota serve [--listen HOST:PORT] [--version V] [options] FILE\n"
            "\n"
            "Serves FILE as the current image to every device that connects: tcpota v1\n"
            "devices (resume, integrity check) and the sample's req0/req1 devices alike.\n"
            "\n"
            "  --listen HOST:PORT    address to listen on (default 0.0.0.0:8070; port 0 = any)\n"
            "  --version V           version string offered (default: the file's name)\n"
            "  --max-conns N         connections at once; more are refused (default 16384)\n"
            "  --idle-timeout S      close a peer silent or not reading for S s (default 60)\n"
            "  --chunk BYTES         image bytes per DATA frame, 512..16380 (default 4096)\n"
            "  --no-progress         no line per device at every 10%% it has made durable\n"
            "  --quiet               errors and the summary only\n");
}

int cmd_serve(int argc, char **argv)
{
    struct tcpota_serve_opts o;
    char host[256] = "0.0.0.0";
    unsigned long long v;
    int i;

    memset(&o, 0, sizeof(o));
    o.host = host;
    o.port = 8070;
    o.max_conns = 16384;
    o.idle_timeout_s = 60;
    o.chunk = 4096;
    o.progress = 1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--progress") == 0) { o.progress = 1; continue; }
        if (strcmp(a, "--no-progress") == 0) { o.progress = 0; continue; }
        if (strcmp(a, "--quiet") == 0) { o.quiet = 1; continue; }
        if (a[0] == '-' && a[1] == '-' && !val) {
            fprintf(stderr, "tcpota serve: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--listen") == 0) {
            if (cli_hostport(val, "--listen", host, sizeof(host), &o.port) < 0) return 2;
        } else if (strcmp(a, "--version") == 0) {
            o.version = val;
        } else if (strcmp(a, "--max-conns") == 0) {
            if (cli_number(val, a, 1, 1000000, &v) < 0) return 2;
            o.max_conns = (unsigned)v;
        } else if (strcmp(a, "--idle-timeout") == 0) {
            if (cli_number(val, a, 1, 65535, &v) < 0) return 2;
            o.idle_timeout_s = (unsigned)v;
        } else if (strcmp(a, "--chunk") == 0) {
            if (cli_number(val, a, 512, 16380, &v) < 0) return 2;
            o.chunk = (unsigned)v;
        } else if (a[0] == '-') {
            fprintf(stderr, "tcpota serve: unknown option %s\n", a);
            usage(stderr);
            return 2;
        } else {
            if (o.image) {
                fprintf(stderr, "tcpota serve: one image only (got %s and %s)\n", o.image, a);
                return 2;
            }
            o.image = a;
            continue;
        }
        i++;
    }
    if (!o.image) {
        fprintf(stderr, "tcpota serve: no image FILE given\n");
        usage(stderr);
        return 2;
    }
    if (!o.version) {
        const char *slash = strrchr(o.image, '/');
        o.version = slash ? slash + 1 : o.image;
        if (strlen(o.version) > 32) {
            fprintf(stderr, "tcpota serve: file name too long for a version; give --version\n");
            return 2;
        }
    }
    return tcpota_serve(&o);
}
