/* pq_dl.c - libpq loaded on first use (pq_dl.h says why). */
#define PQ_DL_IMPL
#include "pq_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct pq_dl pq_dl;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char failed[512]; /* empty: loaded */

/* The one message for a libpq that cannot be used, why it cannot. */
static void say_failed(const char *why)
{
    snprintf(failed, sizeof(failed), "PostgreSQL's client library (%s) did not load: %s; install "
             "it (Debian: apt-get install libpq5)", PQ_SONAME, why);
}

/* dlsym's void * to a function pointer: POSIX allows it, ISO C does not say;
 * copying the bytes keeps -pedantic quiet. */
static int resolve(void *lib, const char *name, void *slot, size_t size)
{
    void *sym = dlsym(lib, name);

    if (!sym) {
        char why[128];
        snprintf(why, sizeof(why), "it has no %s (an older libpq?)", name);
        say_failed(why);
        return -1;
    }
    memcpy(slot, &sym, size);
    return 0;
}

static void load(void)
{
    void *lib = dlopen(PQ_SONAME, RTLD_NOW | RTLD_LOCAL);

    if (!lib) {
        const char *why = dlerror();
        say_failed(why ? why : "dlopen gave no reason");
        return;
    }
#define PQ_DL_RESOLVE(f) \
    if (resolve(lib, #f, &pq_dl.f, sizeof(pq_dl.f)) != 0) return;
    PQ_FUNCS(PQ_DL_RESOLVE)
#undef PQ_DL_RESOLVE
    /* Never closed: the store's threads and connections use it to the end. */
}

int pq_load(char *err, size_t errlen)
{
    pthread_once(&once, load);
    if (failed[0]) {
        snprintf(err, errlen, "%s", failed);
        return -1;
    }
    return 0;
}
