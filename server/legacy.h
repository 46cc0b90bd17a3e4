/* legacy.h - serving the sample's req0/req1 devices on a connection (the
 * protocol itself is core/legacy.h). */
#ifndef TCPOTA_SERVER_LEGACY_H
#define TCPOTA_SERVER_LEGACY_H

#include <stddef.h>
#include <stdint.h>

struct conn;
struct tcpota_serve_opts;

/* Why the server's options forbid serving legacy devices (they can neither
 * authenticate nor check a signature), or NULL when they are served;
 * is_signed: the image they would get is signed (single-image mode knows
 * it from the start, fleet mode once the store has chosen the rollout's
 * image). The reason names the option that would serve them and what it
 * risks. */
const char *legacy_refusal(const struct tcpota_serve_opts *o, int is_signed);
/* 1 when legacy devices are refused because they cannot authenticate
 * (--require-auth without --allow-unauthenticated-legacy): the first of
 * legacy_refusal's reasons, and one the fleet summary counts. */
int legacy_auth_refused(const struct tcpota_serve_opts *o);

/* Feeds bytes a legacy device sent and queues the packages it asked for,
 * until LEGACY_QUEUE_MAX of them wait unread. Returns how many bytes it
 * took (fewer than n: the rest waits for the queue to drain), or -1 when c
 * was closed and freed. */
int legacy_input(struct conn *c, const uint8_t *p, size_t n);

#endif
