/*
 * Certificates for the TLS tests, made at run time with OpenSSL's API
 * (nothing secret is committed): ECDSA P-256 keys, a CA, certificates it
 * signs with DNS, IP and URI subjectAltNames, and validity windows in the
 * past or the near future, which the openssl command of OpenSSL 3.0 cannot
 * write.
 */
#include "tlsgen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "support.h"

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *e;

	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (e == NULL)
		st_fail("tlsgen: extension %d '%s'", nid, value);
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
}

static void write_pem(const char *path, int key, void *obj)
{
	FILE *f = fopen(path, "wb");
	int ok;

	if (f == NULL)
		st_fail("tlsgen: cannot write %s", path);
	ok = key ? PEM_write_PrivateKey(f, obj, NULL, NULL, 0, NULL, NULL)
		 : PEM_write_X509(f, obj);
	fclose(f);
	if (!ok)
		st_fail("tlsgen: PEM %s", path);
}

st_cert *st_cert_make(const char *name, const st_cert_opts *o)
{
	static long serial = 1;
	st_cert *c = calloc(1, sizeof *c);
	X509 *x = X509_new();
	X509_NAME *subj = X509_NAME_new();
	EVP_PKEY *signer;
	X509 *issuer;
	char san[1024] = "";
	size_t n = 0;

	if (c == NULL || x == NULL || subj == NULL)
		st_fail("tlsgen: out of memory");
	c->key = EVP_EC_gen("P-256");
	if (c->key == NULL)
		st_fail("tlsgen: key generation");
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), o->not_before_days * 86400L);
	X509_gmtime_adj(X509_getm_notAfter(x),
			(o->not_after_days != 0 ? o->not_after_days : 365) *
				86400L);
	X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
				   (const unsigned char *)o->cn, -1, -1, 0);
	X509_set_subject_name(x, subj);
	X509_NAME_free(subj);
	issuer = o->issuer != NULL ? o->issuer->x509 : x;
	signer = o->issuer != NULL ? o->issuer->key : c->key;
	X509_set_issuer_name(x, X509_get_subject_name(issuer));
	X509_set_pubkey(x, c->key);
	add_ext(x, issuer, NID_basic_constraints,
		o->ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	add_ext(x, issuer, NID_key_usage,
		o->ca ? "critical,keyCertSign,cRLSign"
		      : "critical,digitalSignature");
	add_ext(x, x, NID_subject_key_identifier, "hash");
	if (o->issuer != NULL)
		add_ext(x, issuer, NID_authority_key_identifier, "keyid");
	if (!o->ca)
		add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
	if (o->dns != NULL)
		n += (size_t)snprintf(san + n, sizeof san - n, "%sDNS:%s",
				      n ? "," : "", o->dns);
	if (o->ip != NULL)
		n += (size_t)snprintf(san + n, sizeof san - n, "%sIP:%s",
				      n ? "," : "", o->ip);
	if (o->uri != NULL)
		n += (size_t)snprintf(san + n, sizeof san - n, "%sURI:%s",
				      n ? "," : "", o->uri);
	if (n > 0)
		add_ext(x, issuer, NID_subject_alt_name, san);
	if (!X509_sign(x, signer, EVP_sha256()))
		st_fail("tlsgen: signing %s", name);
	c->x509 = x;
	c->cert_path = st_fmt("%s/%s.pem", st_tmpdir(), name);
	c->key_path = st_fmt("%s/%s.key", st_tmpdir(), name);
	write_pem(c->cert_path, 0, x);
	write_pem(c->key_path, 1, c->key);
	return c;
}

void st_cert_free(st_cert *c)
{
	if (c == NULL)
		return;
	X509_free(c->x509);
	EVP_PKEY_free(c->key);
	free(c->cert_path);
	free(c->key_path);
	free(c);
}
