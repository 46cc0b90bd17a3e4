/* tls_pem.h - what a PEM file holds, for the messages about a TLS file
 * OpenSSL would not take: the server's --tls-cert and --tls-key
 * (server/tls.c, cli/serve.c) and the device's --ca (cli/tls.c). Only
 * POSIX file calls: no server state, no OpenSSL. */
#ifndef TCPOTA_SERVER_TLS_PEM_H
#define TCPOTA_SERVER_TLS_PEM_H

#include <stddef.h>

/* What a PEM file holds, read whole in TLS_PEM_CHUNK pieces: for messages
 * (a certificate given as the key, a key as the certificate) and for not
 * handing a key to every client given a CA file (a key after a long
 * bundle of certificates counts). */
#define TLS_PEM_CHUNK 16384u
enum tls_pem { TLS_PEM_EMPTY, TLS_PEM_CERT, TLS_PEM_KEY, TLS_PEM_BOTH, TLS_PEM_OTHER, TLS_PEM_UNREAD };
/* TLS_PEM_UNREAD: no regular file that could be opened (a FIFO is never
 * read, so this never waits). */
enum tls_pem tls_pem_kind(const char *path);
/* The same for a file's n bytes already read whole (buf). */
enum tls_pem tls_pem_kind_mem(const char *buf, size_t n);

#endif
