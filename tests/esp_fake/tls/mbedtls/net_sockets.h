/* mbedtls/net_sockets.h - host fake: the error codes a BIO callback returns. */
#ifndef ESP_FAKE_MBEDTLS_NET_SOCKETS_H
#define ESP_FAKE_MBEDTLS_NET_SOCKETS_H

#define MBEDTLS_ERR_NET_RECV_FAILED -0x004C
#define MBEDTLS_ERR_NET_SEND_FAILED -0x004E
#define MBEDTLS_ERR_NET_CONN_RESET -0x0050

#endif
