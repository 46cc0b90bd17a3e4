/* proxy_proto.h - the PROXY protocol header (HAProxy's, versions 1 and 2)
 * that a TCP balancer sends before a client's first byte, naming the
 * client's own address (--proxy-protocol). Sans-I/O: the caller peeks at
 * the socket, this says how long the header is and what it names, and the
 * caller then takes exactly that many bytes, so that what follows (a TLS
 * ClientHello, a HELLO) stays in the socket for the connection.
 * Spec: https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt */
#ifndef TCPOTA_SERVER_PROXY_PROTO_H
#define TCPOTA_SERVER_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest header taken: version 1's limit (107 bytes) and version 2's
 * 16-byte fixed part with up to 240 bytes of addresses and TLVs (HAProxy
 * sends 12 or 36 bytes of addresses, and TLVs only when configured to). */
#define PROXY_HDR_MAX 256u

/* What a header said. */
struct proxy_addr {
    /* 1: the balancer speaks for itself (v2 LOCAL, a health check; v1
     * UNKNOWN): the connection's own address stands; src is not set. */
    int local;
    struct sockaddr_storage src; /* the client's address and port */
    socklen_t srclen;
};

/* Parses the header at the start of p[0..n). Returns its length in bytes
 * (> 0) with *out filled; 0 when p is a valid beginning of a header that
 * needs more bytes (n < PROXY_HDR_MAX); -1 when p does not begin with a
 * valid header (not the PROXY protocol, a malformed line or address, a
 * family other than TCP over IPv4 or IPv6, or longer than PROXY_HDR_MAX),
 * with a short reason in *why. */
int proxy_parse(const uint8_t *p, size_t n, struct proxy_addr *out, const char **why);

#endif
