/*
 * asan_options.c - the sanitizers' defaults in the ASan build of tcpota
 * (TCPOTA_SANITIZE only). ASAN_OPTIONS given at run time add to them, and
 * win for a key given there too.
 *
 * intercept_tls_get_addr=0: `serve --db` loads libpq with dlopen
 * (server/pq_dl.h), and libraries it brings keep thread-local storage that
 * glibc allocates at run time. The runtime's tracking of that storage
 * (GCC 12's, on glibc 2.36) sometimes takes a wrong range for the main
 * thread ("DTLS 5 at 0x5dc-0x10000016de"), and LeakSanitizer's check at
 * exit crashes reading it ("Tracer caught signal 11 ... LeakSanitizer has
 * encountered a fatal error", exit 134): about one stop of a PostgreSQL
 * node in 45, and a CI run failed so (google/sanitizers#1322). Untracked,
 * that storage is still found through glibc's own pointers to it (in the
 * static TLS and the heap, which the check scans): leaks are found as
 * before.
 */
const char *__asan_default_options(void);

const char *__asan_default_options(void)
{
    return "intercept_tls_get_addr=0";
}
