/*
 * checkin.h - the check-in benchmark's clients, a part of bench-loadgen
 * (checkin.c): many short connections, C of them in flight at once.
 *
 *   bench-loadgen checkin --server HOST:PORT [options]
 *       Each connection sends one HELLO (a device id from a pool, in turn),
 *       reads until NO_UPDATE or OFFER, and closes.
 *   bench-loadgen http10 --server HOST:PORT --path /FILE --size BYTES [options]
 *       Each connection sends one HTTP/1.0 GET (no keep-alive) and reads the
 *       whole answer until the server closes; the body must be BYTES long.
 *
 *   options: --conns C (in flight, default 128), --duration SEC (default 5),
 *   --count K (stop once K connections were answered, e.g. to register
 *   every id of the pool before a measured run),
 *   --ids N (checkin: the pool, default 10000), --id-prefix P (default
 *   "ci-"), --model M (default "bench-ci"), --version V (default "1.0.0"),
 *   --sources K (source addresses 127.0.0.1 .. 127.0.0.K, default 32),
 *   --warmup K (the first K answers are not counted: the measured run
 *   starts after them), --tls CA (inside TLS, the server verified against
 *   CA, SNI "localhost"), --resume (with --tls: each device id keeps the
 *   session the server gave it and offers it on its next connection, as
 *   `tcpota device` does; http10 mode: per connection id likewise),
 *   --server-pid P (server_cpu= is process P's CPU seconds, user + system,
 *   over the measured run alone, read from /proc/P/stat).
 *
 * Output: one line on stdout,
 *   loadgen mode=M conns=C duration=S done=K per_s=X no_update=A offers=B
 *           failed=F ids=N ids_sent=I ids_done=U p50_ms=T p99_ms=T client_cpu=S
 *           tls_full=A tls_resumed=B server_cpu=S
 * duration is the time measured (shorter when --count ended the run); done
 * counts the connections answered within it (those still
 * in flight at its end are not counted); ids_sent is how many distinct ids
 * of the pool went out in a HELLO, ids_done how many got an answer (the
 * server has registered at least ids_done and at most ids_sent devices).
 * Exit 0 when none failed.
 */
#ifndef TCPOTA_BENCH_CHECKIN_H
#define TCPOTA_BENCH_CHECKIN_H

#include <sys/socket.h>

/* HOST:PORT (numeric) into *ss; 0 or -1. Shared with loadgen.c, which
 * defines it. */
int loadgen_resolve(const char *text, struct sockaddr_storage *ss, socklen_t *len);

/* Runs `bench-loadgen checkin|http10 ...` (argv[1] is the mode). Returns
 * the process's exit code. */
int checkin_main(int argc, char **argv);

#endif
