/*
 * TLS test support.  Certificates made at run time with OpenSSL's API
 * (nothing secret is committed): ECDSA P-256 keys, a CA, certificates it
 * signs with DNS, IP and URI subjectAltNames, and validity windows in the
 * past or the near future, which the openssl command of OpenSSL 3.0 cannot
 * write; and a TLS client over a test socket that checks a transfer
 * both ways at once, the way st_exchange does in the clear.
 */
#include "tlsgen.h"

#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/err.h>
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

/* ---- a TLS client over a test socket --------------------------------------- */

SSL_CTX *st_tls_client_ctx(const st_cert *ca, const st_cert *cert, int min,
			   int max)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());

	if (c == NULL)
		st_fail("tls client: context");
	if (min != 0)
		SSL_CTX_set_min_proto_version(c, min);
	if (max != 0)
		SSL_CTX_set_max_proto_version(c, max);
	SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE |
				    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (ca != NULL) {
		X509_STORE_add_cert(SSL_CTX_get_cert_store(c), ca->x509);
		SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	}
	if (cert != NULL && (SSL_CTX_use_certificate(c, cert->x509) != 1 ||
			     SSL_CTX_use_PrivateKey(c, cert->key) != 1))
		st_fail("tls client: certificate");
	return c;
}

/* Wait for fd to be ready for what the last SSL call wanted. */
static int wait_ssl(SSL *ssl, int fd, int ret, unsigned ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	if (SSL_get_error(ssl, ret) == SSL_ERROR_WANT_WRITE)
		p.events = POLLOUT;
	return poll(&p, 1, (int)ms);
}

SSL *st_tls_new(SSL_CTX *ctx, int fd, const char *sni)
{
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL)
		st_fail("tls client: SSL_new");
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	SSL_set_fd(ssl, fd);
	if (sni != NULL) {
		SSL_set_tlsext_host_name(ssl, sni);
		SSL_set1_host(ssl, sni);
	}
	return ssl;
}

SSL *st_tls_handshake(SSL_CTX *ctx, int fd, const char *sni, char *why,
		      size_t whylen)
{
	return st_tls_finish(st_tls_new(ctx, fd, sni), fd, why, whylen);
}

SSL *st_tls_finish(SSL *ssl, int fd, char *why, size_t whylen)
{
	uint64_t end = st_now_ms() + ST_WAIT_MS;

	for (;;) {
		int r = SSL_connect(ssl), e;

		if (r == 1)
			return ssl;
		e = SSL_get_error(ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			unsigned long code = ERR_peek_error();

			snprintf(why, whylen, "%s",
				 code != 0 ? ERR_reason_error_string(code)
					   : "closed");
			ERR_clear_error();
			SSL_free(ssl);
			return NULL;
		}
		if (st_now_ms() > end) {
			snprintf(why, whylen, "timeout");
			SSL_free(ssl);
			return NULL;
		}
		wait_ssl(ssl, fd, r, 100);
	}
}

#define XCHUNK 16384

void st_tls_exchange(SSL *ssl, int fd, uint64_t seed, uint64_t expect,
		     uint64_t total)
{
	static char obuf[XCHUNK], ibuf[XCHUNK], want[XCHUNK];
	st_rng out, in;
	uint64_t sent = 0, got = 0, last = st_now_ms();
	size_t olen = 0, ooff = 0, wlen = 0, woff = 0;
	int shut = 0, eof = 0, want_write = 0;

	st_rng_init(&out, seed);
	st_rng_init(&in, expect);
	while (!(shut && eof)) {
		int progress = 0, n;

		if (!shut) {
			if (ooff == olen && sent < total) {
				olen = total - sent < XCHUNK
					       ? (size_t)(total - sent)
					       : XCHUNK;
				st_rng_fill(&out, obuf, olen);
				ooff = 0;
			}
			if (ooff < olen) {
				n = SSL_write(ssl, obuf + ooff,
					      (int)(olen - ooff));
				if (n > 0) {
					ooff += (size_t)n;
					sent += (uint64_t)n;
					progress = 1;
				} else if (SSL_get_error(ssl, n) ==
					   SSL_ERROR_WANT_WRITE) {
					want_write = 1;
				} else if (SSL_get_error(ssl, n) !=
					   SSL_ERROR_WANT_READ) {
					fail_msg("tls exchange: write failed "
						 "after %llu bytes",
						 (unsigned long long)sent);
				}
			}
			if (sent == total && ooff == olen &&
			    SSL_shutdown(ssl) >= 0) {
				shut = 1;
				progress = 1;
			}
		}
		n = SSL_read(ssl, ibuf, sizeof ibuf);
		if (n > 0) {
			for (size_t i = 0; i < (size_t)n; i++) {
				if (woff == wlen) {
					wlen = total - got - i < XCHUNK
						       ? (size_t)(total - got -
								  i)
						       : XCHUNK;
					if (wlen == 0)
						fail_msg("tls exchange: more "
							 "than %llu bytes",
							 (unsigned long long)
								 total);
					st_rng_fill(&in, want, wlen);
					woff = 0;
				}
				if (ibuf[i] != want[woff++])
					fail_msg("tls exchange: byte %llu "
						 "differs",
						 (unsigned long long)(got + i));
			}
			got += (uint64_t)n;
			progress = 1;
		} else {
			int e = SSL_get_error(ssl, n);

			if (e == SSL_ERROR_ZERO_RETURN) {
				if (got != total)
					fail_msg("tls exchange: close_notify "
						 "after %llu of %llu bytes",
						 (unsigned long long)got,
						 (unsigned long long)total);
				eof = 1;
				progress = 1;
			} else if (e == SSL_ERROR_WANT_WRITE) {
				want_write = 1;
			} else if (e != SSL_ERROR_WANT_READ) {
				fail_msg("tls exchange: read failed after "
					 "%llu bytes (%s)",
					 (unsigned long long)got,
					 e == SSL_ERROR_SYSCALL
						 ? "the end without "
						   "close_notify"
						 : "TLS error");
			}
		}
		if (progress) {
			last = st_now_ms();
			continue;
		}
		if (st_now_ms() - last > ST_STALL_MS)
			fail_msg("tls exchange: stalled at %llu sent, %llu "
				 "received",
				 (unsigned long long)sent,
				 (unsigned long long)got);
		{
			struct pollfd p = {.fd = fd, .events = POLLIN};

			if (want_write || (!shut && ooff < olen))
				p.events |= POLLOUT;
			want_write = 0;
			poll(&p, 1, 100);
		}
	}
}
