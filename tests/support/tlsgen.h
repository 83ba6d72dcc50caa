/*
 * TLS test support (tlsgen.c): certificates made at run time, a client.
 */
#ifndef ST_TLSGEN_H
#define ST_TLSGEN_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

typedef struct st_cert {
	EVP_PKEY *key;
	X509 *x509;
	char *cert_path; /* PEM, in st_tmpdir() */
	char *key_path;
} st_cert;

typedef struct st_cert_opts {
	const char *cn;
	const char *dns;  /* a DNS subjectAltName, or NULL */
	const char *ip;   /* an IP subjectAltName, or NULL */
	const char *uri;  /* a URI subjectAltName, or NULL */
	const struct st_cert *issuer; /* NULL: self-signed */
	int ca;
	long not_before_days; /* from now; default 0 */
	long not_after_days;  /* from now; 0: 365 */
} st_cert_opts;

/* name.pem and name.key in st_tmpdir(); fails the test on any error. */
st_cert *st_cert_make(const char *name, const st_cert_opts *o);
void st_cert_free(st_cert *c);

#endif

/* ---- a TLS client over a test socket --------------------------------------- */

/*
 * A client context that trusts ca (NULL: trusts nothing, verifies
 * nothing) and shows cert (NULL: none); versions between min and max
 * (0: OpenSSL's bounds).
 */
SSL_CTX *st_tls_client_ctx(const st_cert *ca, const st_cert *cert, int min,
			   int max);
/*
 * The handshake on the connected socket fd (made non-blocking), with SNI
 * sni (NULL: none; verified against ca when the context has one), within
 * ST_WAIT_MS.  The SSL, or NULL with OpenSSL's reason in why (or "closed",
 * "timeout").
 */
SSL *st_tls_handshake(SSL_CTX *ctx, int fd, const char *sni, char *why,
		      size_t whylen);
/* The same in two steps: the SSL on fd (non-blocking), and its handshake
 * to the end (the SSL freed when it fails). */
SSL *st_tls_new(SSL_CTX *ctx, int fd, const char *sni);
SSL *st_tls_finish(SSL *ssl, int fd, char *why, size_t whylen);
/*
 * As st_exchange over TLS: total bytes of the stream seed out while the
 * same number of the stream expect come in and are checked, both at once;
 * then close_notify, and the peer's close_notify must follow the last
 * byte.  Fails the test at the first difference or a stall.
 */
void st_tls_exchange(SSL *ssl, int fd, uint64_t seed, uint64_t expect,
		     uint64_t total);
