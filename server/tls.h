/* tls.h - TLS for `tcpota serve --tls-cert`: the server context, and the
 * channel binding a device's authentication covers inside TLS. */
#ifndef TCPOTA_SERVER_TLS_H
#define TCPOTA_SERVER_TLS_H

#include "tcpota/codec.h"

#include <openssl/ssl.h>
#include <stdint.h>

/* A server context (TLS 1.2 or later) with this certificate chain and key
 * (key NULL: in the certificate's file). NULL after printing why. */
SSL_CTX *tls_context(const char *cert, const char *key);

/* Writes the TLS exporter of this connection under TCPOTA_TLS_BINDING_LABEL
 * (codec.h), the binding a device's AUTH must cover. Returns 0, or -1 when
 * the handshake has not finished. */
int tls_binding(SSL *ssl, uint8_t out[TCPOTA_TLS_BINDING_LEN]);

/* Why a TLS connection failed, from OpenSSL's error code `err` (0: none
 * known): its reason string, or a plain sentence when there is none. */
const char *tls_error_reason(unsigned long err);

#endif
