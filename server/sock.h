/*
 * sock.h - what the server asks of a TCP socket beyond reading and writing:
 * how much waits unread, how much of what it wrote its peer has not
 * acknowledged, and an end that drops what is still queued.
 */
#ifndef TCPOTA_SERVER_SOCK_H
#define TCPOTA_SERVER_SOCK_H

#include <sys/ioctl.h>
#include <sys/socket.h>
#ifdef __linux__
#include <linux/sockios.h> /* SIOCOUTQ */
#endif

/* Bytes fd has received that wait unread (FIONREAD), or -1 when the
 * socket cannot tell. A loop that ran late (stopped, starved) asks this
 * before it calls a peer silent: what it finds may have come in time. */
static inline long sock_unread(int fd)
{
    int n;

    if (fd < 0 || ioctl(fd, FIONREAD, &n) != 0 || n < 0) return -1;
    return n;
}

/* Bytes written to fd that its peer has not acknowledged yet (Linux:
 * SIOCOUTQ; elsewhere 0: written counts as received), or -1 when the
 * socket cannot tell. */
static inline long sock_unacked(int fd)
{
#ifdef SIOCOUTQ
    int n;

    if (fd < 0 || ioctl(fd, SIOCOUTQ, &n) != 0 || n < 0) return -1;
    return n;
#else
    (void)fd;
    return 0;
#endif
}

/* Bytes written to fd that the kernel has not sent yet (Linux:
 * SIOCOUTQNSD): what waits for the peer's window, unlike bytes in flight
 * to a peer that reads. 0 elsewhere or when the socket cannot tell. */
static inline long sock_unsent(int fd)
{
#ifdef SIOCOUTQNSD
    int n;

    if (fd < 0 || ioctl(fd, SIOCOUTQNSD, &n) != 0 || n < 0) return 0;
    return n;
#else
    (void)fd;
    return 0;
#endif
}

/* The next close() of fd resets the connection (RST) instead of sending
 * what is still queued: for a transfer stopped on purpose, whose queued
 * bytes must not reach the peer. */
static inline void sock_reset_on_close(int fd)
{
    struct linger l = {1, 0};

    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

#endif
