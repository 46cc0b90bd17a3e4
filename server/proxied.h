/* proxied.h - connections from a balancer the operator trusts
 * (--proxy-protocol): each begins with a PROXY protocol header
 * (proxy_proto.h), read before anything else; the connection then goes on
 * as one from the client's own address, so that the log, the registry and
 * the per-address limit (--max-unauth-per-addr) see the device, not the
 * balancer. */
#ifndef TCPOTA_SERVER_PROXIED_H
#define TCPOTA_SERVER_PROXIED_H

#include <event2/util.h>

struct server;

/* Seconds a trusted balancer's connection may take to send its header. */
#define PROXY_HEADER_TIMEOUT_S 10

/* 1 when host (text_sockaddr's form) is an address given to
 * --proxy-protocol, else 0. */
int proxied_from(const struct server *srv, const char *host);

/* Waits for fd's header, then hands fd to accept_from() (server.c) with the
 * client's address; a connection without a valid header within
 * PROXY_HEADER_TIMEOUT_S is closed (said, unless it closed without a byte:
 * a balancer's health check). host/port: the balancer's. */
void proxied_start(struct server *srv, evutil_socket_t fd, const char *host, const char *port);

/* Closes every connection still waiting for its header (at shutdown). */
void proxied_free_all(struct server *srv);

#endif
