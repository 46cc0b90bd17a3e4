/* tool_dial.h - the test peers' connect (tests/tools): a blocking IPv4 TCP
 * connection to host:port, from the address `from` when not NULL, whose
 * reads time out after timeout_s seconds. On failure it says so, prefixed
 * with `who`, and exits 2. */
#ifndef TCPOTA_TOOL_DIAL_H
#define TCPOTA_TOOL_DIAL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static inline int tool_dial(const char *who, const char *host, int port, const char *from,
                            int timeout_s)
{
    struct sockaddr_in a;
    struct timeval tv = {timeout_s, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd >= 0 && from) {
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        if (inet_pton(AF_INET, from, &a.sin_addr) != 1 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
            fprintf(stderr, "%s: bind to %s: ", who, from);
            perror(NULL);
            exit(2);
        }
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        fprintf(stderr, "%s: connect to %s:%d: ", who, host, port);
        perror(NULL);
        exit(2);
    }
    return fd;
}

#endif
