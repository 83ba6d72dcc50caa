/*
 * TLS over sl_stream: see tls.h.
 */
#include "tls.h"

#ifdef SL_HAVE_TLS
#include <openssl/crypto.h>
#endif

const char *sl_tls_library(void)
{
#ifdef SL_HAVE_TLS
	return OpenSSL_version(OPENSSL_VERSION);
#else
	return "none";
#endif
}
