/*
 * Certificates made at run time for the TLS tests (tlsgen.c).
 */
#ifndef ST_TLSGEN_H
#define ST_TLSGEN_H

#include <openssl/evp.h>
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
