/* notify.c - the service manager's notifications (notify.h): libsystemd's
 * sd_notify(), loaded when NOTIFY_SOCKET is set, as libpq is when the
 * PostgreSQL store is used (pq_dl.h): linked, libsystemd and the six
 * libraries it brings (lz4, zstd, lzma, gcrypt, ...) would be loaded at
 * every start of tcpota, every device and CLI call too (about 4 ms of CPU
 * each on the 2-core VM), for a server under systemd alone. */
#include "notify.h"

#include "log.h"
#include "server.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* libsystemd's soname (Debian: libsystemd0) and sd_notify(3)'s signature,
 * stable since systemd 209. */
#define NOTIFY_SONAME "libsystemd.so.0"
typedef int notify_fn(int unset_environment, const char *state);

static notify_fn *sd_notify_p;
static int notify_tried, notify_failed;

static void send_state(const struct tcpota_serve_opts *o, const char *state)
{
    if (!getenv("NOTIFY_SOCKET")) {
        return;
    }
    if (!notify_tried) {
        void *lib = dlopen(NOTIFY_SONAME, RTLD_NOW | RTLD_LOCAL);
        void *sym = lib ? dlsym(lib, "sd_notify") : NULL;

        notify_tried = 1;
        if (!sym) {
            const char *why = dlerror();
            say_always(o, LOG_LV_WARN, "warning: NOTIFY_SOCKET is set, but %s did not load (%s): "
                       "the service manager does not hear that the server is ready, and stops a "
                       "Type=notify unit after its TimeoutStartSec; install libsystemd0, or run "
                       "the unit as Type=exec", NOTIFY_SONAME, why ? why : "no reason given");
            if (lib) dlclose(lib);
            return;
        }
        /* dlsym's void * to a function pointer: POSIX allows it. */
        memcpy(&sd_notify_p, &sym, sizeof(sym));
    }
    if (sd_notify_p) {
        int rc = sd_notify_p(0, state);
        if (rc < 0 && !notify_failed) {
            /* A socket that is not there (a unit's stale environment, a
             * typo by hand) was silent: under Type=notify the start then
             * times out with no word why (a trial). Said once. */
            notify_failed = 1;
            say_always(o, LOG_LV_WARN, "warning: NOTIFY_SOCKET=%s took no message (%s): the service"
                       " manager does not hear that the server is ready, and stops a Type=notify"
                       " unit after its TimeoutStartSec; unset NOTIFY_SOCKET outside a service",
                       getenv("NOTIFY_SOCKET"), strerror(-rc));
        }
    }
}

void notify_ready(const struct tcpota_serve_opts *o)
{
    send_state(o, "READY=1");
}

void notify_reloading(const struct tcpota_serve_opts *o)
{
    struct timespec ts;
    char state[64];

    /* MONOTONIC_USEC: what systemd's Type=notify-reload (253 and later)
     * asks beside RELOADING=1; Debian 12's 252 reads RELOADING=1 alone. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u);
    send_state(o, state);
}

void notify_stopping(const struct tcpota_serve_opts *o)
{
    send_state(o, "STOPPING=1");
}

void notify_forget(void)
{
    (void)unsetenv("NOTIFY_SOCKET");
}
