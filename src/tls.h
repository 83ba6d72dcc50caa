/*
 * TLS (OpenSSL 3), written once above the stream API.  Built only when
 * configure found OpenSSL (SL_HAVE_TLS); without it the functions here
 * say so and do nothing else.
 */
#ifndef SL_TLS_H
#define SL_TLS_H

/* The TLS library and its version ("OpenSSL 3.0.17 1 Jul 2025"), or
 * "none" when this sluice was built without TLS. */
const char *sl_tls_library(void);

#endif
