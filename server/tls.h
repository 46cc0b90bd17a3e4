/* tls.h - the TLS context `tcpota serve --tls-cert` wraps connections in. */
#ifndef TCPOTA_SERVER_TLS_H
#define TCPOTA_SERVER_TLS_H

#include <openssl/ssl.h>

/* A server context (TLS 1.2 or later) with this certificate chain and key
 * (key NULL: in the certificate's file). NULL after printing why. */
SSL_CTX *tls_context(const char *cert, const char *key);

#endif
