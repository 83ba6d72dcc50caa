/*
 * TLS over sl_stream with memory BIOs: see tls.h for the design.
 *
 * A connection (struct sl_tls) lives in its stream's layer slot from
 * sl_tls_accept/connect until the stream's close callback.  Its raw
 * stream is read by the filter itself (tls_alloc, tls_on_raw): the bytes
 * go into the SSL's read BIO, and then either into the handshake or, as
 * plaintext, to the caller's read callback.  What OpenSSL writes into the
 * write BIO leaves by flush(): straight out with sl_stream_try_write()
 * where the stream takes it, the rest copied into one buffer and queued
 * (the only ciphertext a connection ever holds; none while idle, and
 * SSL_MODE_RELEASE_BUFFERS frees OpenSSL's own record buffers then too).
 *
 * Callbacks never run inside the call that asked for them (net.h's rule):
 * what is due from a call (queued writes to finish, plaintext already
 * decrypted for a read restarted) is done from the connection's task.
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

const char *sl_tls_strerror(int err)
{
	switch (err) {
	case SL_TLS_ETRUNC:
		return "TLS peer closed without close_notify";
	case SL_TLS_EPROTO:
		return "TLS handshake or protocol error";
	case SL_TLS_EVERIFY:
		return "TLS peer certificate did not verify";
	case SL_TLS_ENOCERT:
		return "TLS client sent no certificate";
	case SL_TLS_ENOTALLOWED:
		return "TLS client certificate not allowed";
	default:
		return sl_strerror(err);
	}
}

#ifndef SL_HAVE_TLS

const char *sl_tls_library(void)
{
	return "none";
}

#else

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdatomic.h>
#include <sys/stat.h>

const char *sl_tls_library(void)
{
	return OpenSSL_version(OPENSSL_VERSION);
}

/* ---- contexts ------------------------------------------------------------ */

struct sl_tls_ctx {
	atomic_int refs;
	SSL_CTX *ssl;
	int server;
	char *server_name; /* client: SNI and the name verified, or NULL */
	int name_is_ip;
	int verify;
	char *cert_file;   /* for sl_tls_ctx_days_left */
	long days_left;
};

/* OpenSSL's reason for the first error of this thread (the cause; later
 * ones say where it surfaced), and clear them. */
static const char *ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	if (r == NULL && e != 0) {
		ERR_error_string_n(e, buf, len);
		r = buf;
	}
	ERR_clear_error();
	return r != NULL ? r : "unknown error";
}

/* The file must be there and readable: say so in the OS's words first,
 * which are clearer than OpenSSL's for a missing file. */
static int file_readable(const char *what, const char *path, char *err,
			 size_t errlen)
{
	FILE *f = fopen(path, "rb");

	if (f == NULL) {
		snprintf(err, errlen, "%s %s: cannot be read: %s", what, path,
			 strerror(errno));
		return -1;
	}
	fclose(f);
	return 0;
}

static long days_until(const ASN1_TIME *t)
{
	int days = 0, secs = 0;

	if (!ASN1_TIME_diff(&days, &secs, NULL, t))
		return 0;
	return days;
}

/* The certificate (chain) and key of c, checked against each other and
 * the clock. */
static int load_cert_key(sl_tls_ctx *c, const char *cert, const char *key,
			 char *err, size_t errlen)
{
	char rb[256];
	X509 *x;

	if (file_readable("cert", cert, err, errlen) < 0)
		return -1;
	if (key != NULL && file_readable("key", key, err, errlen) < 0)
		return -1;
	if (SSL_CTX_use_certificate_chain_file(c->ssl, cert) != 1) {
		snprintf(err, errlen, "cert %s: %s", cert,
			 ossl_reason(rb, sizeof rb));
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(c->ssl, key != NULL ? key : cert,
					SSL_FILETYPE_PEM) != 1) {
		/* OpenSSL checks the key against the certificate here. */
		if (ERR_GET_REASON(ERR_peek_error()) ==
		    X509_R_KEY_VALUES_MISMATCH)
			snprintf(err, errlen,
				 "key %s does not match the certificate %s: "
				 "%s",
				 key != NULL ? key : cert, cert,
				 ossl_reason(rb, sizeof rb));
		else
			snprintf(err, errlen, "key %s: %s",
				 key != NULL ? key : cert,
				 ossl_reason(rb, sizeof rb));
		return -1;
	}
	if (SSL_CTX_check_private_key(c->ssl) != 1) {
		snprintf(err, errlen,
			 "key %s does not match the certificate %s: %s",
			 key != NULL ? key : cert, cert,
			 ossl_reason(rb, sizeof rb));
		return -1;
	}
	x = SSL_CTX_get0_certificate(c->ssl);
	if (x != NULL) {
		c->days_left = days_until(X509_get0_notAfter(x));
		if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
			snprintf(err, errlen, "cert %s: certificate has expired",
				 cert);
			return -1;
		}
	}
	if ((c->cert_file = strdup(cert)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* CAs to verify peers against: every certificate in the file, each a CA. */
static int load_ca(sl_tls_ctx *c, const char *what, const char *file,
		   char *err, size_t errlen)
{
	char rb[256];
	STACK_OF(X509_INFO) *infos;
	BIO *b;
	int n = 0;

	if (file_readable(what, file, err, errlen) < 0)
		return -1;
	if ((b = BIO_new_file(file, "r")) == NULL) {
		snprintf(err, errlen, "%s %s: %s", what, file,
			 ossl_reason(rb, sizeof rb));
		return -1;
	}
	infos = PEM_X509_INFO_read_bio(b, NULL, NULL, NULL);
	BIO_free(b);
	if (infos == NULL) {
		snprintf(err, errlen, "%s %s: %s", what, file,
			 ossl_reason(rb, sizeof rb));
		return -1;
	}
	for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
		X509 *x = sk_X509_INFO_value(infos, i)->x509;
		char name[256];

		if (x == NULL)
			continue;
		n++;
		if (X509_check_ca(x) == 0) {
			X509_NAME_oneline(X509_get_subject_name(x), name,
					  sizeof name);
			snprintf(err, errlen, "%s %s: '%s' is not a CA "
					      "certificate",
				 what, file, name);
			sk_X509_INFO_pop_free(infos, X509_INFO_free);
			return -1;
		}
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	if (n == 0) {
		snprintf(err, errlen, "%s %s: no certificate in it", what,
			 file);
		return -1;
	}
	if (SSL_CTX_load_verify_locations(c->ssl, file, NULL) != 1) {
		snprintf(err, errlen, "%s %s: %s", what, file,
			 ossl_reason(rb, sizeof rb));
		return -1;
	}
	return 0;
}

/* What a listener and an upstream set alike: versions, ciphers, modes. */
static int ctx_common(sl_tls_ctx *c, int min_version, const char *ciphers,
		      const char *suites, char *err, size_t errlen)
{
	char rb[256];

	SSL_CTX_set_min_proto_version(c->ssl, min_version);
	SSL_CTX_set_max_proto_version(c->ssl, TLS1_3_VERSION);
	/* Idle connections hold no record buffers; writes are whole. */
	SSL_CTX_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
	if (ciphers != NULL && SSL_CTX_set_cipher_list(c->ssl, ciphers) != 1) {
		snprintf(err, errlen, "ciphers '%s': %s", ciphers,
			 ossl_reason(rb, sizeof rb));
		return -1;
	}
	if (suites != NULL && SSL_CTX_set_ciphersuites(c->ssl, suites) != 1) {
		snprintf(err, errlen, "ciphersuites '%s': %s", suites,
			 ossl_reason(rb, sizeof rb));
		return -1;
	}
	return 0;
}

static sl_tls_ctx *ctx_new(int server, char *err, size_t errlen)
{
	sl_tls_ctx *c = calloc(1, sizeof *c);

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&c->refs, 1);
	c->server = server;
	c->ssl = SSL_CTX_new(server ? TLS_server_method()
				    : TLS_client_method());
	if (c->ssl == NULL) {
		char rb[256];

		snprintf(err, errlen, "TLS context: %s",
			 ossl_reason(rb, sizeof rb));
		free(c);
		return NULL;
	}
	return c;
}

sl_tls_ctx *sl_tls_ctx_server(const sl_tls_listen_conf *t, char *err,
			      size_t errlen)
{
	sl_tls_ctx *c = ctx_new(1, err, errlen);

	if (c == NULL)
		return NULL;
	if (ctx_common(c, t->min_version, t->ciphers, t->ciphersuites, err,
		       errlen) < 0 ||
	    load_cert_key(c, t->cert, t->key, err, errlen) < 0)
		goto fail;
	if (t->verify_client != SL_TLS_VERIFY_NONE) {
		STACK_OF(X509_NAME) *names;

		if (load_ca(c, "client_ca", t->client_ca, err, errlen) < 0)
			goto fail;
		/* The CAs a client is told to choose a certificate for. */
		names = SSL_load_client_CA_file(t->client_ca);
		if (names != NULL)
			SSL_CTX_set_client_CA_list(c->ssl, names);
		SSL_CTX_set_verify(c->ssl,
				   t->verify_client == SL_TLS_VERIFY_REQUIRED
					   ? SSL_VERIFY_PEER |
						     SSL_VERIFY_FAIL_IF_NO_PEER_CERT
					   : SSL_VERIFY_PEER,
				   NULL);
	}
	ERR_clear_error();
	return c;
fail:
	sl_tls_ctx_unref(c);
	ERR_clear_error();
	return NULL;
}

sl_tls_ctx *sl_tls_ctx_client(const sl_tls_upstream_conf *t,
			      const sl_endpoint *ep, char *err,
			      size_t errlen)
{
	sl_tls_ctx *c = ctx_new(0, err, errlen);
	const char *name;

	if (c == NULL)
		return NULL;
	if (ctx_common(c, t->min_version, t->ciphers, t->ciphersuites, err,
		       errlen) < 0)
		goto fail;
	if (t->cert != NULL &&
	    load_cert_key(c, t->cert, t->key, err, errlen) < 0)
		goto fail;
	c->verify = t->verify;
	if (t->verify) {
		if (t->ca != NULL) {
			if (load_ca(c, "ca", t->ca, err, errlen) < 0)
				goto fail;
		} else if (SSL_CTX_set_default_verify_paths(c->ssl) != 1) {
			char rb[256];

			snprintf(err, errlen, "the system's CA store: %s",
				 ossl_reason(rb, sizeof rb));
			goto fail;
		}
		SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
	}
	name = t->server_name != NULL ? t->server_name
	       : ep->kind == SL_EP_TCP ? ep->host
				       : NULL;
	if (name != NULL) {
		if ((c->server_name = strdup(name)) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		c->name_is_ip = t->server_name == NULL && ep->host_is_literal;
	}
	ERR_clear_error();
	return c;
fail:
	sl_tls_ctx_unref(c);
	ERR_clear_error();
	return NULL;
}

void sl_tls_ctx_ref(sl_tls_ctx *c)
{
	atomic_fetch_add(&c->refs, 1);
}

void sl_tls_ctx_unref(sl_tls_ctx *c)
{
	if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	SSL_CTX_free(c->ssl);
	free(c->server_name);
	free(c->cert_file);
	free(c);
}

long sl_tls_ctx_days_left(const sl_tls_ctx *c, const char **file)
{
	*file = c->cert_file;
	return c->cert_file != NULL ? c->days_left : 0;
}

#define EXPIRY_WARN_DAYS 30

static void check_expiry(const sl_config *cfg, const sl_conf_mark *m,
			 const sl_tls_ctx *c,
			 void (*warn)(void *arg, const char *msg), void *arg)
{
	const char *file;
	long days = sl_tls_ctx_days_left(c, &file);
	char msg[1024];

	if (file == NULL || days >= EXPIRY_WARN_DAYS)
		return;
	snprintf(msg, sizeof msg,
		 "%s:%u:%u: tls: cert %s expires in %ld day%s", cfg->path,
		 m->line, m->col, file, days, days == 1 ? "" : "s");
	warn(arg, msg);
}

int sl_tls_check(const sl_config *cfg,
		 void (*warn)(void *arg, const char *msg), void *arg,
		 char *err, size_t errlen)
{
	char e[768], msg[1024];

	for (size_t i = 0; i < cfg->nroutes; i++) {
		const sl_route_conf *rc = &cfg->routes[i];

		for (size_t j = 0; j < rc->nlisten; j++) {
			const sl_listen_conf *lc = &rc->listen[j];
			sl_tls_ctx *c;

			if (!lc->tls.on)
				continue;
			if ((c = sl_tls_ctx_server(&lc->tls, e, sizeof e)) ==
			    NULL) {
				snprintf(err, errlen, "%s:%u:%u: tls: %s",
					 cfg->path, lc->tls.mark.line,
					 lc->tls.mark.col, e);
				return -1;
			}
			check_expiry(cfg, &lc->tls.mark, c, warn, arg);
			sl_tls_ctx_unref(c);
		}
		for (size_t j = 0; j < rc->nupstreams; j++) {
			const sl_upstream_conf *uc = &rc->upstreams[j];
			sl_tls_ctx *c;

			if (!uc->tls.on)
				continue;
			if ((c = sl_tls_ctx_client(&uc->tls, &uc->ep, e,
						   sizeof e)) == NULL) {
				snprintf(err, errlen, "%s:%u:%u: tls: %s",
					 cfg->path, uc->tls.mark.line,
					 uc->tls.mark.col, e);
				return -1;
			}
			check_expiry(cfg, &uc->tls.mark, c, warn, arg);
			sl_tls_ctx_unref(c);
			if (!uc->tls.verify) {
				snprintf(msg, sizeof msg,
					 "%s:%u:%u: tls: verify: false: the "
					 "certificate of upstream %s is not "
					 "checked (anyone in the path can "
					 "read and change the traffic)",
					 cfg->path, uc->tls.mark.line,
					 uc->tls.mark.col, uc->address);
				warn(arg, msg);
			}
		}
	}
	return 0;
}

#endif /* SL_HAVE_TLS */
