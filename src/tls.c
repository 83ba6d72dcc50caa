/*
 * TLS over sl_stream with BIOs of its own: see tls.h for the design.
 *
 * A connection (struct sl_tls) lives in its stream's layer slot from
 * sl_tls_accept/connect until the stream's close callback.  Its raw
 * stream is read by the filter itself (tls_alloc, tls_on_raw): the bytes
 * are lent to the SSL's read BIO, and then go either into the handshake
 * or, as plaintext, to the caller's read callback.  What OpenSSL writes
 * into the write BIO goes straight out with sl_stream_try_write() where
 * the stream takes it (the records of one SSL_write gathered into one
 * write: batch_begin); the rest is copied into one buffer that flush()
 * queues.  The two BIOs are sluice's own (bio_method), not memory BIOs:
 * a memory BIO keeps the largest buffer it ever held, so a session that
 * once moved a burst would hold tens of KB of it while idle.  Here the
 * only bytes a connection holds are ciphertext that could not leave yet
 * and ciphertext OpenSSL has not taken yet (a reader that paused); none
 * while idle, and SSL_MODE_RELEASE_BUFFERS frees OpenSSL's own record
 * buffers then too.
 *
 * Callbacks never run inside the call that asked for them (net.h's rule):
 * what is due from a call (queued writes to finish, plaintext already
 * decrypted for a read restarted) is done from the connection's task.
 */
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "loop/loop.h"

const char *sl_tls_library(void)
{
	return OpenSSL_version(OPENSSL_VERSION);
}

/* ---- contexts ------------------------------------------------------------ */

/*
 * Session tickets (server): stateless resumption, with keys of our own so
 * that they rotate.  A listener's context has a ring of two keys, shared
 * by every loop thread that accepts on it (a mutex around a copy of a key:
 * the cipher runs outside it): tickets are made with the current key;
 * the previous one still opens tickets for one more period, and such a
 * ticket is renewed with the current key.  The keys rotate every
 * TICKET_PERIOD_S, lazily, at the first ticket made or opened after that;
 * after two periods without one, both keys go.  A ticket's lifetime is
 * one period, so every ticket that has not expired can be opened.  A
 * reload makes new contexts, and with them new keys: a session does not
 * resume across a reload, whose certificates, CAs and allow may differ.
 * The keys live in memory only, never on disk.
 */
#define TICKET_PERIOD_S 3600

struct ticket_key {
	unsigned char name[16], aes[32], hmac[32];
};

struct ticket_ring {
	pthread_mutex_t lock;
	struct ticket_key cur, prev;
	int has_prev;
	uint64_t born_ms; /* cur's, sl_clock_ms() */
};

struct sl_tls_ctx {
	atomic_int refs;
	SSL_CTX *ssl;
	struct ticket_ring *tickets; /* server; NULL: none (a client) */
	int server;
	char *server_name; /* client: SNI and the name verified, or NULL */
	int name_is_ip;
	int verify;
	char *cert_file;   /* for sl_tls_ctx_days_left */
	long days_left;
	long long not_after; /* the certificate's end, in seconds since the
			      * epoch */
	/* Server: who may connect once verified; NULL lists (allow: any,
	 * or none given) admit every verified client. */
	sl_tls_allow_conf allow;
	/* ALPN: the protocols, in the wire's form (length-prefixed), by
	 * preference; NULL: none. */
	unsigned char *alpn;
	size_t alpn_len;
	/* Client: the session the last handshake with the upstream left,
	 * offered by the next (NULL: none, or session_reuse: false).
	 * Shared by every loop thread, so under its lock. */
	int reuse;
	pthread_mutex_t sess_lock;
	SSL_SESSION *sess;
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

/* Days until t, and when t is in seconds since the epoch. */
static long days_until(const ASN1_TIME *t, long long *when)
{
	int days = 0, secs = 0;

	*when = (long long)time(NULL);
	if (!ASN1_TIME_diff(&days, &secs, NULL, t))
		return 0;
	*when += (long long)days * 86400 + secs;
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
		c->days_left = days_until(X509_get0_notAfter(x),
					  &c->not_after);
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

static int key_new(struct ticket_key *k)
{
	return RAND_bytes(k->name, sizeof k->name) == 1 &&
			       RAND_priv_bytes(k->aes, sizeof k->aes) == 1 &&
			       RAND_priv_bytes(k->hmac, sizeof k->hmac) == 1
		       ? 0
		       : -1;
}

/* The current key becomes the previous one; a new one is current (under
 * the lock).  On a failure of the random source nothing changes. */
static void ring_rotate(struct ticket_ring *r, uint64_t now)
{
	struct ticket_key k;

	if (key_new(&k) < 0) {
		ERR_clear_error();
		return;
	}
	r->prev = r->cur;
	r->has_prev = 1;
	r->cur = k;
	r->born_ms = now;
	OPENSSL_cleanse(&k, sizeof k);
}

/* Rotate what is due at now (under the lock). */
static void ring_due(struct ticket_ring *r, uint64_t now)
{
	uint64_t age = now - r->born_ms;

	if (age < TICKET_PERIOD_S * 1000ull)
		return;
	ring_rotate(r, now);
	if (age >= 2 * TICKET_PERIOD_S * 1000ull)
		r->has_prev = 0; /* the old current key is past its time too */
}

static void ring_free(struct ticket_ring *r)
{
	if (r == NULL)
		return;
	pthread_mutex_destroy(&r->lock);
	OPENSSL_cleanse(r, sizeof *r);
	free(r);
}

static struct ticket_ring *ring_new(void)
{
	struct ticket_ring *r = calloc(1, sizeof *r);

	if (r == NULL)
		return NULL;
	if (key_new(&r->cur) < 0) {
		free(r);
		return NULL;
	}
	r->born_ms = sl_clock_ms();
	pthread_mutex_init(&r->lock, NULL);
	return r;
}

/*
 * OpenSSL's ticket callback (SSL_CTX_set_tlsext_ticket_key_evp_cb): enc,
 * set up the cipher and MAC with the current key, and say its name; else
 * find the key named: 1 with the current one, 2 with the previous one (the
 * ticket is renewed), 0 for none (a full handshake), -1 on an error.
 */
static int ticket_cb(SSL *s, unsigned char name[16], unsigned char iv[16],
		     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	const sl_tls_ctx *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(s));
	struct ticket_ring *r = c->tickets;
	struct ticket_key k;
	OSSL_PARAM params[3];
	int ret = 0, ok;

	pthread_mutex_lock(&r->lock);
	ring_due(r, sl_clock_ms());
	if (enc || memcmp(name, r->cur.name, sizeof r->cur.name) == 0) {
		k = r->cur;
		ret = 1;
	} else if (r->has_prev &&
		   memcmp(name, r->prev.name, sizeof r->prev.name) == 0) {
		k = r->prev;
		ret = 2;
	}
	pthread_mutex_unlock(&r->lock);
	if (ret == 0)
		return 0;
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
						      k.hmac, sizeof k.hmac);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						     (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	if (enc) {
		memcpy(name, k.name, sizeof k.name);
		ok = RAND_bytes(iv, 16) == 1 &&
		     EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes,
					iv) == 1;
	} else {
		ok = EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes,
					iv) == 1;
	}
	ok = ok && EVP_MAC_CTX_set_params(hctx, params) == 1;
	OPENSSL_cleanse(&k, sizeof k);
	return ok ? ret : -1;
}

void sl_tls_ctx_rotate_tickets(sl_tls_ctx *c)
{
	if (c->tickets == NULL)
		return;
	pthread_mutex_lock(&c->tickets->lock);
	ring_rotate(c->tickets, sl_clock_ms());
	pthread_mutex_unlock(&c->tickets->lock);
}

void *sl_tls_ctx_openssl(sl_tls_ctx *c)
{
	return c->ssl;
}

/* A listener's session resumption: tickets with the ring's keys, no
 * server-side cache (memory and a lock shared by every thread, for
 * nothing tickets do not do), and the session ID context every server
 * that verifies clients must set (without it OpenSSL refuses a
 * resumption to a listener with verify_client). */
static int ctx_tickets(sl_tls_ctx *c, char *err, size_t errlen)
{
	unsigned char sid[SSL_MAX_SID_CTX_LENGTH];

	if ((c->tickets = ring_new()) == NULL ||
	    RAND_bytes(sid, sizeof sid) != 1 ||
	    SSL_CTX_set_session_id_context(c->ssl, sid, sizeof sid) != 1 ||
	    SSL_CTX_set_tlsext_ticket_key_evp_cb(c->ssl, ticket_cb) != 1) {
		char rb[256];

		snprintf(err, errlen, "session tickets: %s",
			 ossl_reason(rb, sizeof rb));
		return -1;
	}
	SSL_CTX_set_app_data(c->ssl, c);
	SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_timeout(c->ssl, TICKET_PERIOD_S);
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
	if (c->ssl == NULL || pthread_mutex_init(&c->sess_lock, NULL) != 0) {
		char rb[256];

		snprintf(err, errlen, "TLS context: %s",
			 ossl_reason(rb, sizeof rb));
		SSL_CTX_free(c->ssl);
		free(c);
		return NULL;
	}
	SSL_CTX_set_app_data(c->ssl, c);
	return c;
}

/* names (n of them, 1-255 bytes each: config.c checks) into c->alpn,
 * the wire's list.  0, or -1 without memory. */
static int alpn_wire(sl_tls_ctx *c, char *const *names, size_t n)
{
	size_t len = 0, k = 0;

	for (size_t i = 0; i < n; i++)
		len += 1 + strlen(names[i]);
	if (n == 0)
		return 0;
	if (len > 65535 || (c->alpn = malloc(len)) == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(names[i]);

		c->alpn[k++] = (unsigned char)l;
		memcpy(c->alpn + k, names[i], l);
		k += l;
	}
	c->alpn_len = len;
	return 0;
}

/* A listener's choice among the client's protocols: the first of its own
 * list the client offers (the server's preference, as HAProxy and nginx
 * choose).  None in common: the handshake goes on without ALPN, as
 * HAProxy's does, and the upstream sees none. */
static int alpn_select(SSL *ssl, const unsigned char **out,
		       unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	const sl_tls_ctx *c = arg;
	unsigned char *o;

	(void)ssl;
	if (SSL_select_next_proto(&o, outlen, c->alpn,
				  (unsigned int)c->alpn_len, in,
				  inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = o;
	return SSL_TLSEXT_ERR_OK;
}

/* How a builder ends: c, or (ok 0) NULL with c freed; OpenSSL's error
 * queue empty either way (a failure's reason is in the builder's err). */
static sl_tls_ctx *ctx_end(sl_tls_ctx *c, int ok)
{
	if (!ok) {
		sl_tls_ctx_unref(c);
		c = NULL;
	}
	ERR_clear_error();
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
	    load_cert_key(c, t->cert, t->key, err, errlen) < 0 ||
	    (t->tickets && ctx_tickets(c, err, errlen) < 0))
		goto fail;
	if (alpn_wire(c, t->alpn, t->nalpn) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (c->alpn != NULL)
		SSL_CTX_set_alpn_select_cb(c->ssl, alpn_select, c);
	if (!t->tickets) {
		/* No resumption at all: no tickets, and no cache. */
		SSL_CTX_set_options(c->ssl, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(c->ssl, 0);
		SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_OFF);
	}
	if (t->verify_client != SL_TLS_VERIFY_NONE) {
		STACK_OF(X509_NAME) *names;

		if (load_ca(c, "client_ca", t->client_ca, err, errlen) < 0)
			goto fail;
		/* The CAs a client is told to choose a certificate for. */
		names = SSL_load_client_CA_file(t->client_ca);
		if (names != NULL)
			SSL_CTX_set_client_CA_list(c->ssl, names);
		if (sl_tls_allow_copy(&c->allow, &t->allow) < 0) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		SSL_CTX_set_verify(c->ssl,
				   t->verify_client == SL_TLS_VERIFY_REQUIRED
					   ? SSL_VERIFY_PEER |
						     SSL_VERIFY_FAIL_IF_NO_PEER_CERT
					   : SSL_VERIFY_PEER,
				   NULL);
	}
	return ctx_end(c, 1);
fail:
	return ctx_end(c, 0);
}

/*
 * Upstream session resumption, as HAProxy does toward its servers: the
 * session (or TLS 1.3 ticket) of the last handshake with an upstream is
 * offered by the next connection to it, which then skips the
 * certificate exchange and its signatures.  One per upstream context:
 * the newest replaces the one before.  OpenSSL calls this on the loop
 * thread that read the ticket; 1 keeps the reference.
 */
static int new_session(SSL *ssl, SSL_SESSION *sess)
{
	sl_tls_ctx *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	SSL_SESSION *old;

	if (!SSL_SESSION_is_resumable(sess))
		return 0;
	pthread_mutex_lock(&c->sess_lock);
	old = c->sess;
	c->sess = sess;
	pthread_mutex_unlock(&c->sess_lock);
	SSL_SESSION_free(old);
	return 1;
}

/*
 * The OS's trusted roots (sl_os_trusted_roots: Windows' ROOT stores; OpenSSL
 * 3.0 reads no Windows store, 3.2's winstore: URI would) into an upstream
 * context's store.  A root that does not decode, or that OpenSSL does not
 * take, is skipped and counted: one odd certificate in a store of
 * hundreds should not stop the daemon.
 */
struct os_roots {
	X509_STORE *store;
	int taken, skipped;
};

static int add_os_root(const unsigned char *der, size_t len, void *arg)
{
	struct os_roots *r = arg;
	const unsigned char *p = der;
	X509 *x = len <= LONG_MAX ? d2i_X509(NULL, &p, (long)len) : NULL;

	if (x != NULL && X509_STORE_add_cert(r->store, x) == 1)
		r->taken++;
	else
		r->skipped++;
	X509_free(x);
	return 0;
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
	if (alpn_wire(c, t->alpn, t->nalpn) < 0 ||
	    (c->alpn != NULL &&
	     SSL_CTX_set_alpn_protos(c->ssl, c->alpn,
				     (unsigned int)c->alpn_len) != 0)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((c->reuse = t->session_reuse) != 0) {
		/* Sessions are kept by new_session(), not OpenSSL's cache. */
		SSL_CTX_set_session_cache_mode(c->ssl,
					       SSL_SESS_CACHE_CLIENT |
						       SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(c->ssl, new_session);
	}
	if (t->verify) {
		struct os_roots roots = {SSL_CTX_get_cert_store(c->ssl), 0, 0};
		int n;

		if (t->ca != NULL) {
			if (load_ca(c, "ca", t->ca, err, errlen) < 0)
				goto fail;
		} else if ((n = sl_os_trusted_roots(add_os_root, &roots)) !=
			   -ENOSYS) {
			if (n < 0 || roots.taken == 0) {
				snprintf(err, errlen,
					 "the Windows certificate store %s%s "
					 "(expected ca: with the CAs to trust)",
					 n < 0 ? "could not be read: "
					       : "has no trusted root",
					 n < 0 ? sl_strerror(n) : "");
				goto fail;
			}
			sl_debug("tls: %d trusted roots from the Windows "
				 "certificate store (%d skipped)",
				 roots.taken, roots.skipped);
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
	return ctx_end(c, 1);
fail:
	return ctx_end(c, 0);
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
	ring_free(c->tickets);
	SSL_SESSION_free(c->sess);
	pthread_mutex_destroy(&c->sess_lock);
	free(c->alpn);
	free(c->server_name);
	free(c->cert_file);
	sl_tls_allow_free(&c->allow);
	free(c);
}

long sl_tls_ctx_days_left(const sl_tls_ctx *c, const char **file)
{
	*file = c->cert_file;
	return c->cert_file != NULL ? c->days_left : 0;
}

long long sl_tls_ctx_not_after(const sl_tls_ctx *c, const char **file)
{
	*file = c->cert_file;
	return c->cert_file != NULL ? c->not_after : 0;
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
		 "%s:%u:%u: tls: cert %s expires in %ld day%s",
		 sl_conf_file(cfg, m), m->line, m->col, file, days,
		 days == 1 ? "" : "s");
	warn(arg, msg);
}

/*
 * sluice -t on one tls mapping (at m): its context c, made (NULL: e says
 * why, which goes to err), and the expiry of its certificate.
 */
static int check_ctx(const sl_config *cfg, const sl_conf_mark *m,
		     sl_tls_ctx *c, const char *e, char *err, size_t errlen,
		     void (*warn)(void *arg, const char *msg), void *arg)
{
	if (c == NULL) {
		snprintf(err, errlen, "%s:%u:%u: tls: %s", sl_conf_file(cfg, m),
			 m->line, m->col, e);
		return -1;
	}
	check_expiry(cfg, m, c, warn, arg);
	sl_tls_ctx_unref(c);
	return 0;
}

int sl_tls_check(const sl_config *cfg,
		 void (*warn)(void *arg, const char *msg), void *arg,
		 char *err, size_t errlen)
{
	char e[768], msg[1024];

	for (size_t i = 0; i < cfg->nroutes; i++) {
		const sl_route_conf *rc = &cfg->routes[i];

		for (size_t j = 0; j < rc->nlisten; j++) {
			const sl_tls_listen_conf *t = &rc->listen[j].tls;

			if (t->on &&
			    check_ctx(cfg, &t->mark,
				      sl_tls_ctx_server(t, e, sizeof e), e, err,
				      errlen, warn, arg) < 0)
				return -1;
		}
		for (size_t j = 0; j < rc->nupstreams; j++) {
			const sl_upstream_conf *uc = &rc->upstreams[j];
			const sl_tls_upstream_conf *t = &uc->tls;

			if (!t->on)
				continue;
			if (check_ctx(cfg, &t->mark,
				      sl_tls_ctx_client(t, &uc->ep, e, sizeof e),
				      e, err, errlen, warn, arg) < 0)
				return -1;
			if (!t->verify) {
				snprintf(msg, sizeof msg,
					 "%s:%u:%u: tls: verify: false: the "
					 "certificate of upstream %s is not "
					 "checked (anyone in the path can "
					 "read and change the traffic)",
					 sl_conf_file(cfg, &t->mark),
					 t->mark.line, t->mark.col,
					 uc->address);
				warn(arg, msg);
			}
		}
	}
	return 0;
}

/* ---- connections ---------------------------------------------------------- */

enum {
	T_HANDSHAKE = 1u << 0, /* handshaking: done_cb is due */
	T_READY = 1u << 1,     /* the handshake succeeded */
	T_READING = 1u << 2,   /* the caller reads */
	T_RAW_READING = 1u << 3,
	T_RAW_END = 1u << 4,   /* the stream ended (raw_err) */
	T_ENDED = 1u << 5,     /* the caller got its end */
	T_SHUT_WANTED = 1u << 6,
	T_SHUT_SENT = 1u << 7, /* close_notify made, the stream's shutdown asked */
	T_CLOSING = 1u << 8,
	T_TASK = 1u << 9,      /* the task is posted */
	T_FREE = 1u << 10,     /* the stream is gone: the task frees */
	T_OFFERED = 1u << 11,  /* a client that offered a kept session */
};

struct sl_tls {
	sl_stream *raw;
	sl_tls_ctx *ctx;
	SSL *ssl;
	/* What the peer sent and OpenSSL has not taken: lent by the raw
	 * read's callback while it runs, else a copy (in_heap) of the rest. */
	const char *in;
	size_t in_len;
	char *in_heap;
	unsigned flags;
	int raw_err;   /* how the stream ended: SL_EOF or an error */
	int read_err;  /* the end of reading, found after plaintext */
	int write_err; /* sticky */
	const char *why; /* OpenSSL's reason for a failure, static text */
	char *matched;   /* "cn:NAME", "dns:NAME", "uri:NAME" that allow
			  * admitted by, as the certificate has it */
	sl_tls_done_cb done_cb;
	sl_alloc_cb alloc_cb;
	sl_read_cb read_cb;
	/* Ciphertext the stream could not take at once: out collects it,
	 * obuf is the buffer being written (oreq). */
	char *out;
	size_t out_len, out_cap;
	char *obuf;
	sl_write_req oreq;
	int owriting;
	/* The caller's writes: queued (wq, not encrypted yet), then
	 * encrypted and waiting for their ciphertext to leave (wd). */
	sl_write_req *wq, **wq_tail;
	sl_write_req *wd, **wd_tail;
	sl_shutdown_cb shutdown_cb;
	sl_close_cb close_cb;
	sl_task task;
};

/*
 * One buffer per loop thread for the reads of the stream: lent to the
 * read BIO while the read's callback runs (in_add, in_keep).  A read's
 * buffer is asked for only when its bytes are there on every platform
 * (stream_win.c waits with a zero-byte read, or a one-byte read into the
 * stream itself on a pipe), so no read holds it across callbacks.
 */
#define SCRATCH (64 * 1024)
static _Thread_local char scratch[SCRATCH];

static sl_tls *tls_of(const sl_stream *st)
{
	return sl_stream_get_layer(st);
}

int sl_tls_on(const sl_stream *st)
{
	return tls_of(st) != NULL;
}

static void tls_free(sl_tls *t)
{
	SSL_free(t->ssl); /* and its BIOs */
	sl_tls_ctx_unref(t->ctx);
	free(t->matched);
	free(t->in_heap);
	free(t->out);
	free(t->obuf);
	free(t);
}

static void tls_task(sl_task *task, int status);

static void post(sl_tls *t)
{
	if (t->flags & T_TASK)
		return;
	t->flags |= T_TASK;
	sl_loop_post(sl_stream_loop(t->raw), &t->task);
}

static void tls_alloc(sl_stream *st, size_t suggested, sl_buf *buf)
{
	(void)st;
	(void)suggested;
	buf->base = scratch;
	buf->len = sizeof scratch;
}

static void tls_on_raw(sl_stream *st, ptrdiff_t n, const sl_buf *buf);

static int raw_read(sl_tls *t, int on)
{
	int r = 0;

	if (on && !(t->flags & (T_RAW_READING | T_RAW_END))) {
		r = sl_stream_read_start(t->raw, tls_alloc, tls_on_raw);
		if (r == 0)
			t->flags |= T_RAW_READING;
	} else if (!on && (t->flags & T_RAW_READING)) {
		t->flags &= ~T_RAW_READING;
		r = sl_stream_read_stop(t->raw);
	}
	return r;
}

static void on_out(sl_write_req *req, int status);

/* ---- the BIOs -----------------------------------------------------------
 *
 * OpenSSL reads ciphertext from t->in and writes records through
 * bio_write, which sends each at once where it can.  An empty t->in is
 * "retry later" (more will come), not the end: the end is the raw
 * stream's, handled above OpenSSL (end_of).
 */

/* The raw stream's n bytes at p, lent until the read callback returns
 * (in_keep); after bytes OpenSSL has not taken yet, a copy.  0 or
 * -ENOMEM. */
static int in_add(sl_tls *t, const char *p, size_t n)
{
	char *h;

	if (t->in_len == 0) {
		t->in = p;
		t->in_len = n;
		return 0;
	}
	if ((h = malloc(t->in_len + n)) == NULL)
		return -ENOMEM;
	memcpy(h, t->in, t->in_len);
	memcpy(h + t->in_len, p, n);
	free(t->in_heap);
	t->in_heap = h;
	t->in = h;
	t->in_len += n;
	return 0;
}

/* Bytes still lent when their callback ends: copied.  0 or -ENOMEM. */
static int in_keep(sl_tls *t)
{
	char *h;

	if (t->in_len == 0 || t->in_heap != NULL)
		return 0;
	if ((h = malloc(t->in_len)) == NULL)
		return -ENOMEM;
	memcpy(h, t->in, t->in_len);
	t->in_heap = h;
	t->in = h;
	return 0;
}

static int bio_read(BIO *b, char *p, int len)
{
	sl_tls *t = BIO_get_data(b);
	size_t n;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (t->in_len == 0) {
		BIO_set_retry_read(b);
		return -1;
	}
	n = t->in_len < (size_t)len ? t->in_len : (size_t)len;
	memcpy(p, t->in, n);
	t->in += n;
	if ((t->in_len -= n) == 0) {
		free(t->in_heap);
		t->in_heap = NULL;
	}
	return (int)n;
}

/*
 * The records one SSL_write makes (a 64 KiB plaintext buffer is four of
 * them), gathered on the loop's thread and given to the stream in one
 * write: one system call and one segment train instead of four, where
 * each record alone would cost a call of its own.  batch_of is the
 * connection gathering, between batch_begin() and batch_end().
 */
static _Thread_local char batch[4 * (16384 + 256)];
static _Thread_local size_t batch_len;
static _Thread_local struct sl_tls *batch_of;

static void batch_begin(sl_tls *t)
{
	batch_of = t;
	batch_len = 0;
}

static int out_send(sl_tls *t, const char *p, size_t n);

/* What was gathered, to the stream. */
static void batch_end(sl_tls *t)
{
	size_t n = batch_len;

	batch_len = 0;
	if (n > 0)
		(void)out_send(t, batch, n);
}

static void batch_done(sl_tls *t)
{
	batch_end(t);
	batch_of = NULL;
}

/* Room for n more bytes in t->out.  0 or -ENOMEM. */
static int out_room(sl_tls *t, size_t n)
{
	size_t cap = t->out_cap ? t->out_cap : 16 * 1024 + 256;
	char *o;

	if (t->out_len + n <= t->out_cap)
		return 0;
	while (cap < t->out_len + n)
		cap *= 2;
	if ((o = realloc(t->out, cap)) == NULL)
		return -ENOMEM;
	t->out = o;
	t->out_cap = cap;
	return 0;
}

/*
 * A record (or a flight) from OpenSSL: to the stream now where it takes
 * it and nothing is waiting before it; the rest into t->out for flush().
 * It is always taken whole: a failure of the stream is kept in
 * t->write_err, which every caller looks at next.
 */
static int bio_write(BIO *b, const char *p, int len)
{
	sl_tls *t = BIO_get_data(b);
	size_t n = len > 0 ? (size_t)len : 0;

	BIO_clear_retry_flags(b);
	if (n == 0 || t->write_err != 0)
		return len;
	if (batch_of == t) {
		/* Records of one SSL_write: gathered, so that the stream
		 * gets one write for them (batch_end). */
		if (batch_len + n > sizeof batch)
			batch_end(t);
		if (n <= sizeof batch) {
			memcpy(batch + batch_len, p, n);
			batch_len += n;
			return len;
		}
	}
	(void)out_send(t, p, n);
	return len;
}

/* n bytes at p to the stream: now where it takes them and nothing waits
 * before them, the rest into t->out.  Errors go to t->write_err. */
static int out_send(sl_tls *t, const char *p, size_t n)
{
	ptrdiff_t w = 0;

	if (t->out_len == 0 && !t->owriting) {
		w = sl_stream_try_write(t->raw, p, n, 0);
		if (w == (ptrdiff_t)n)
			return 0;
		if (w < 0 && w != -EAGAIN) {
			t->write_err = (int)w;
			return 0;
		}
		if (w < 0)
			w = 0;
	}
	if (out_room(t, n - (size_t)w) < 0) {
		t->write_err = -ENOMEM;
		return 0;
	}
	memcpy(t->out + t->out_len, p + w, n - (size_t)w);
	t->out_len += n - (size_t)w;
	return 0;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	sl_tls *t = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return (long)(t->in_len < LONG_MAX ? t->in_len : LONG_MAX);
	case BIO_CTRL_WPENDING:
		return (long)(t->out_len < LONG_MAX ? t->out_len : LONG_MAX);
	case BIO_CTRL_FLUSH: /* bio_write sends or keeps all at once */
		return 1;
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				     "sluice stream");

	if (m == NULL || !BIO_meth_set_read(m, bio_read) ||
	    !BIO_meth_set_write(m, bio_write) ||
	    !BIO_meth_set_ctrl(m, bio_ctrl) ||
	    !BIO_meth_set_create(m, bio_create)) {
		BIO_meth_free(m);
		return;
	}
	bio_method = m;
}

/* A BIO of the connection t, owned by its SSL once set.  NULL when out
 * of memory. */
static BIO *bio_new(sl_tls *t)
{
	BIO *b;

	if (pthread_once(&bio_once, bio_method_init) != 0 ||
	    bio_method == NULL || (b = BIO_new(bio_method)) == NULL)
		return NULL;
	BIO_set_data(b, t);
	return b;
}

/* What bio_write could not send, queued in one write.  0 or -errno (the
 * stream's sticky error included). */
static int flush(sl_tls *t)
{
	int r;

	if (t->write_err != 0)
		return t->write_err;
	if (t->owriting || t->out_len == 0)
		return 0;
	t->obuf = t->out;
	t->out = NULL;
	t->out_cap = 0;
	t->oreq.data = t;
	r = sl_stream_write(t->raw, &t->oreq, t->obuf, t->out_len, on_out);
	t->out_len = 0;
	if (r < 0) {
		free(t->obuf);
		t->obuf = NULL;
		return r;
	}
	t->owriting = 1;
	return 0;
}

/* Why the last SSL call failed, as this API's error; t->why the text. */
static int ssl_failure(sl_tls *t, int ret)
{
	int e = SSL_get_error(t->ssl, ret);
	unsigned long code = ERR_peek_error();
	long vr = SSL_get_verify_result(t->ssl);
	int err = SL_TLS_EPROTO;

	if (code != 0) {
		t->why = ERR_reason_error_string(code);
		if (ERR_GET_REASON(code) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
			err = SL_TLS_ENOCERT;
		else if (ERR_GET_REASON(code) ==
			 SSL_R_CERTIFICATE_VERIFY_FAILED)
			err = SL_TLS_EVERIFY;
	} else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
		t->why = "unexpected end of the stream";
	}
	if (vr != X509_V_OK && err != SL_TLS_ENOCERT) {
		t->why = X509_verify_cert_error_string(vr);
		err = SL_TLS_EVERIFY;
	}
	ERR_clear_error();
	return err;
}

/*
 * The session to offer: a copy of the last one kept, if any.  A copy,
 * because OpenSSL marks the session of a connection that ends without
 * close_notify as not resumable (SSL_free, ssl_clear_bad_session), and
 * one cut connection must not spoil the session for the others.
 */
static void session_offer(sl_tls *t)
{
	sl_tls_ctx *c = t->ctx;
	SSL_SESSION *s = NULL;

	if (!c->reuse)
		return;
	pthread_mutex_lock(&c->sess_lock);
	if (c->sess != NULL)
		s = SSL_SESSION_dup(c->sess);
	pthread_mutex_unlock(&c->sess_lock);
	if (s != NULL) {
		if (SSL_set_session(t->ssl, s) == 1)
			t->flags |= T_OFFERED;
		SSL_SESSION_free(s);
	}
	ERR_clear_error();
}

/* A handshake that failed forgets the session it offered: the upstream
 * may have changed its keys or certificate, and the next tries afresh. */
static void session_forget(sl_tls *t)
{
	sl_tls_ctx *c = t->ctx;
	SSL_SESSION *old;

	if (!c->reuse || !(t->flags & T_OFFERED))
		return;
	pthread_mutex_lock(&c->sess_lock);
	old = c->sess;
	c->sess = NULL;
	pthread_mutex_unlock(&c->sess_lock);
	SSL_SESSION_free(old);
}

static void handshake_end(sl_tls *t, int status)
{
	if (status != 0 && !t->ctx->server)
		session_forget(t);
	t->flags &= ~T_HANDSHAKE;
	if (status == 0)
		t->flags |= T_READY;
	(void)raw_read(t, 0);
	t->done_cb(t->raw, status);
}

/* s (len bytes, not NUL-terminated: a certificate may hold a NUL to
 * fool a strcmp) is one of list's n names. */
static int name_in(const unsigned char *s, int len, char *const *list,
		   size_t n, int nocase)
{
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(list[i]);

		if (len < 0 || (size_t)len != l)
			continue;
		if (nocase ? OPENSSL_strncasecmp((const char *)s, list[i], l) == 0
			   : memcmp(s, list[i], l) == 0)
			return 1;
	}
	return 0;
}

static void set_matched(sl_tls *t, const char *kind,
			const unsigned char *s, int len)
{
	free(t->matched);
	t->matched = malloc(strlen(kind) + (size_t)len + 1);
	if (t->matched != NULL) {
		strcpy(t->matched, kind);
		memcpy(t->matched + strlen(kind), s, (size_t)len);
		t->matched[strlen(kind) + (size_t)len] = '\0';
	}
}

/*
 * A verified client against the listener's allow: its subject's common
 * name, then its DNS and URI subjectAltNames; the first match admits.
 * 0, SL_TLS_ENOCERT (allow names some, the client showed none), or
 * SL_TLS_ENOTALLOWED.
 */
static int check_allow(sl_tls *t)
{
	const sl_tls_allow_conf *a = &t->ctx->allow;
	X509 *x;
	GENERAL_NAMES *names;
	X509_NAME *subj;
	int i, ok = 0;

	if (a->ncn + a->ndns + a->nuri == 0)
		return 0; /* allow: any, or nothing asked */
	if ((x = SSL_get0_peer_certificate(t->ssl)) == NULL) {
		t->why = "no client certificate";
		return SL_TLS_ENOCERT;
	}
	subj = X509_get_subject_name(x);
	for (i = -1; !ok && (i = X509_NAME_get_index_by_NID(
				     subj, NID_commonName, i)) >= 0;) {
		ASN1_STRING *d =
			X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
		unsigned char *u = NULL;
		int n = ASN1_STRING_to_UTF8(&u, d);

		if (n >= 0 && name_in(u, n, a->cn, a->ncn, 0)) {
			set_matched(t, "cn:", u, n);
			ok = 1;
		}
		OPENSSL_free(u);
	}
	names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (i = 0; !ok && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		const ASN1_IA5STRING *v;

		if (g->type == GEN_DNS) {
			v = g->d.dNSName;
			if (name_in(v->data, v->length, a->dns, a->ndns, 1)) {
				set_matched(t, "dns:", v->data, v->length);
				ok = 1;
			}
		} else if (g->type == GEN_URI) {
			v = g->d.uniformResourceIdentifier;
			if (name_in(v->data, v->length, a->uri, a->nuri, 0)) {
				set_matched(t, "uri:", v->data, v->length);
				ok = 1;
			}
		}
	}
	GENERAL_NAMES_free(names);
	if (!ok)
		t->why = "certificate not in allow";
	return ok ? 0 : SL_TLS_ENOTALLOWED;
}

/* A step of the handshake with what has come so far. */
static void handshake(sl_tls *t)
{
	int r = SSL_do_handshake(t->ssl), f;

	if (r == 1) {
		if ((f = flush(t)) < 0)
			t->write_err = f;
		else if (t->ctx->server)
			f = check_allow(t);
		handshake_end(t, f);
		return;
	}
	if (SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ) {
		int err = ssl_failure(t, r);

		(void)flush(t); /* the alert, where it can go */
		handshake_end(t, err);
		return;
	}
	if ((f = flush(t)) < 0) {
		handshake_end(t, f);
		return;
	}
	if (t->flags & T_RAW_END) {
		t->why = "the peer ended the stream in the handshake";
		handshake_end(t, t->raw_err == SL_EOF ? SL_TLS_EPROTO
						      : t->raw_err);
		return;
	}
	if ((f = raw_read(t, 1)) < 0)
		handshake_end(t, f);
}

/* The caller's end of reading: SL_EOF, SL_TLS_ETRUNC or an error, with
 * the buffer it gave (or none). */
static void read_end(sl_tls *t, int err, const sl_buf *buf)
{
	sl_buf none = {NULL, 0};

	t->flags &= ~T_READING;
	t->flags |= T_ENDED;
	(void)raw_read(t, 0);
	t->read_cb(t->raw, err, buf != NULL ? buf : &none);
}

/* How reading ends once nothing is left to decrypt and the stream has
 * ended: after close_notify, the end; without it, a truncation. */
static int end_of(const sl_tls *t)
{
	if (t->raw_err != SL_EOF)
		return t->raw_err;
	return (SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN)
		       ? SL_EOF
		       : SL_TLS_ETRUNC;
}

static int reading(const sl_tls *t)
{
	return (t->flags & (T_READING | T_CLOSING | T_ENDED)) == T_READING;
}

/* Nothing to decrypt until the stream says more: the end if it has
 * ended, else read it. */
static void read_more(sl_tls *t)
{
	int r;

	if (t->flags & T_RAW_END)
		read_end(t, end_of(t), NULL);
	else if ((r = raw_read(t, 1)) < 0)
		read_end(t, r, NULL);
}

/*
 * Plaintext to the caller for as long as it reads and there is some.
 * Each of its buffers is filled with as many records as are here (as
 * nginx's ngx_ssl_recv does), so the far side writes once per buffer
 * rather than once per record.
 */
static void deliver(sl_tls *t)
{
	while (reading(t)) {
		sl_buf b = {NULL, 0};
		size_t want, got = 0;
		int n = 1, err = 0;

		if (t->read_err != 0) {
			read_end(t, t->read_err, NULL);
			return;
		}
		if (!SSL_has_pending(t->ssl) && t->in_len == 0) {
			read_more(t);
			return;
		}
		t->alloc_cb(t->raw, 65536, &b);
		if (b.len == 0 || b.base == NULL) {
			read_end(t, -ENOBUFS, &b);
			return;
		}
		want = b.len < 1u << 30 ? b.len : 1u << 30;
		while (got < want &&
		       (n = SSL_read(t->ssl, b.base + got, (int)(want - got))) >
			       0) {
			got += (size_t)n;
			if (!SSL_has_pending(t->ssl) && t->in_len == 0)
				break;
		}
		if (n <= 0) {
			int e = SSL_get_error(t->ssl, n);

			if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify */
				ERR_clear_error();
				err = SL_EOF;
			} else if (e != SSL_ERROR_WANT_READ) {
				err = ssl_failure(t, n);
			}
		}
		if (got > 0) {
			/* The end, if one came, after this buffer. */
			t->read_err = err;
			t->read_cb(t->raw, (ptrdiff_t)got, &b);
			continue;
		}
		if (err != 0) {
			read_end(t, err, &b);
			return;
		}
		/* A record not whole yet, or one that was no data (a
		 * ticket, a key update): the buffer back, and read on. */
		t->read_cb(t->raw, 0, &b);
		if (!reading(t))
			break;
		if (t->in_len > 0)
			continue; /* OpenSSL takes some each time */
		/* (The stream may have ended in the middle of a record.) */
		read_more(t);
		return;
	}
	if (!(t->flags & (T_READING | T_HANDSHAKE | T_CLOSING)))
		(void)raw_read(t, 0);
}

static void tls_on_raw(sl_stream *st, ptrdiff_t n, const sl_buf *buf)
{
	sl_tls *t = tls_of(st);

	if (n == 0 || (t->flags & T_CLOSING))
		return;
	if (n > 0 && in_add(t, buf->base, (size_t)n) < 0)
		n = -ENOMEM;
	if (n < 0) {
		t->flags |= T_RAW_END;
		t->flags &= ~T_RAW_READING; /* reading stopped by itself */
		t->raw_err = (int)n;
	}
	if (t->flags & T_HANDSHAKE) {
		handshake(t);
	} else {
		deliver(t);
		/* What reading made OpenSSL say (a key update's answer). */
		if (!(t->flags & T_CLOSING)) {
			int r = flush(t);

			if (r < 0 && t->write_err == 0)
				t->write_err = r;
		}
	}
	/* What OpenSSL did not take (a reader that paused, data right
	 * after the handshake) outlives the stream's buffer. */
	if (in_keep(t) < 0) {
		t->in_len = 0;
		t->write_err = t->write_err ? t->write_err : -ENOMEM;
	}
}

/* Every write of the caller ends with err. */
static void fail_writes(sl_tls *t, int err)
{
	sl_write_req *q[2] = {t->wd, t->wq};

	t->wd = t->wq = NULL;
	t->wd_tail = &t->wd;
	t->wq_tail = &t->wq;
	for (int i = 0; i < 2; i++)
		while (q[i] != NULL) {
			sl_write_req *req = q[i];

			q[i] = req->next;
			req->cb(req, err);
		}
}

static void on_raw_shut(sl_stream *st, int status)
{
	sl_tls *t = tls_of(st);
	sl_shutdown_cb cb = t->shutdown_cb;

	t->shutdown_cb = NULL;
	if (cb != NULL)
		cb(st, status);
}

/*
 * The caller's writes, in order: encrypt those queued, send, and once
 * every byte of them is out, call them done; then a shutdown asked for.
 */
static void pump(sl_tls *t)
{
	int r;

	while (!(t->flags & T_CLOSING)) {
		if (t->write_err != 0) {
			fail_writes(t, t->write_err);
			if (t->shutdown_cb != NULL &&
			    !(t->flags & T_SHUT_SENT)) {
				sl_shutdown_cb cb = t->shutdown_cb;

				t->shutdown_cb = NULL;
				cb(t->raw, t->write_err);
			}
			return;
		}
		if ((r = flush(t)) < 0) {
			t->write_err = r;
			continue;
		}
		if (t->owriting)
			return; /* on_out comes back here */
		if (t->wd != NULL) {
			sl_write_req *req = t->wd;

			t->wd = req->next;
			if (t->wd == NULL)
				t->wd_tail = &t->wd;
			req->done = req->len;
			req->cb(req, 0);
			continue;
		}
		if (t->wq != NULL) {
			sl_write_req *req = t->wq;

			t->wq = req->next;
			if (t->wq == NULL)
				t->wq_tail = &t->wq;
			req->next = NULL;
			*t->wd_tail = req;
			t->wd_tail = &req->next;
			if (req->len > 0) {
				int w;

				batch_begin(t);
				w = SSL_write(t->ssl, req->buf, (int)req->len);
				batch_done(t);
				if (w <= 0)
					t->write_err = ssl_failure(t, 0);
			}
			continue;
		}
		if ((t->flags & (T_SHUT_WANTED | T_SHUT_SENT)) ==
		    T_SHUT_WANTED) {
			t->flags |= T_SHUT_SENT;
			(void)SSL_shutdown(t->ssl); /* close_notify */
			ERR_clear_error();
			if ((r = flush(t)) == 0)
				r = sl_stream_shutdown(t->raw, on_raw_shut);
			if (r < 0)
				on_raw_shut(t->raw, r);
		}
		return;
	}
}

static void on_out(sl_write_req *req, int status)
{
	sl_tls *t = req->data;

	free(t->obuf);
	t->obuf = NULL;
	t->owriting = 0;
	if (status == -ECANCELED || (t->flags & T_CLOSING))
		return;
	if (status < 0 && t->write_err == 0)
		t->write_err = status;
	if (t->flags & T_HANDSHAKE) {
		int r = status < 0 ? status : flush(t);

		if (r < 0)
			handshake_end(t, r);
		return;
	}
	pump(t);
}

static void tls_task(sl_task *task, int status)
{
	sl_tls *t = task->data;

	t->flags &= ~T_TASK;
	if (t->flags & T_FREE) {
		tls_free(t);
		return;
	}
	if (status < 0 || (t->flags & T_CLOSING))
		return;
	if (t->flags & T_HANDSHAKE) {
		handshake(t); /* bytes that came before (sl_tls_accept) */
		return;
	}
	deliver(t);
	pump(t);
}

static void tls_closed(sl_stream *st)
{
	sl_tls *t = tls_of(st);
	sl_close_cb cb = t->close_cb;

	if (t->flags & T_HANDSHAKE) {
		t->flags &= ~T_HANDSHAKE;
		t->done_cb(st, -ECANCELED);
	}
	fail_writes(t, -ECANCELED);
	on_raw_shut(st, -ECANCELED); /* one not passed to the stream yet */
	sl_stream_set_layer(st, NULL);
	if (cb != NULL)
		cb(st);
	if (t->flags & T_TASK)
		t->flags |= T_FREE;
	else
		tls_free(t);
}

static sl_tls *tls_new(sl_stream *st, sl_tls_ctx *ctx, sl_tls_done_cb cb,
		       int server)
{
	sl_tls *t;
	BIO *rb, *wb;

	if (tls_of(st) != NULL || (t = calloc(1, sizeof *t)) == NULL)
		return NULL;
	t->raw = st;
	t->ssl = SSL_new(ctx->ssl);
	rb = bio_new(t);
	wb = bio_new(t);
	if (t->ssl == NULL || rb == NULL || wb == NULL) {
		BIO_free(rb);
		BIO_free(wb);
		SSL_free(t->ssl);
		free(t);
		ERR_clear_error();
		return NULL;
	}
	SSL_set_bio(t->ssl, rb, wb);
	sl_tls_ctx_ref(ctx);
	t->ctx = ctx;
	t->wq_tail = &t->wq;
	t->wd_tail = &t->wd;
	t->done_cb = cb;
	t->flags = T_HANDSHAKE;
	sl_task_init(&t->task, tls_task, t);
	sl_stream_set_layer(st, t);
	if (server)
		SSL_set_accept_state(t->ssl);
	else
		SSL_set_connect_state(t->ssl);
	return t;
}

/* A connection that failed to start: gone, the stream as it was. */
static int tls_drop(sl_tls *t, int err)
{
	sl_stream_set_layer(t->raw, NULL);
	tls_free(t);
	return err;
}

int sl_tls_accept(sl_stream *st, sl_tls_ctx *ctx, const void *early,
		  size_t early_len, sl_tls_done_cb cb)
{
	sl_tls *t = tls_new(st, ctx, cb, 1);
	int r = t != NULL ? raw_read(t, 1) : -ENOMEM;

	if (r == 0 && early_len > 0) {
		/* The handshake takes them from the task: its callback
		 * may not run from here. */
		if (in_add(t, early, early_len) < 0 || in_keep(t) < 0)
			r = -ENOMEM;
		else
			post(t);
	}
	return r < 0 && t != NULL ? tls_drop(t, r) : r;
}

int sl_tls_connect(sl_stream *st, sl_tls_ctx *ctx, sl_tls_done_cb cb)
{
	sl_tls *t = tls_new(st, ctx, cb, 0);
	int r;

	if (t == NULL)
		return -ENOMEM;
	if (ctx->server_name != NULL) {
		if (!ctx->name_is_ip)
			SSL_set_tlsext_host_name(t->ssl, ctx->server_name);
		if (ctx->verify) {
			X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);

			X509_VERIFY_PARAM_set_hostflags(
				vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (ctx->name_is_ip)
				X509_VERIFY_PARAM_set1_ip_asc(
					vp, ctx->server_name);
			else
				X509_VERIFY_PARAM_set1_host(
					vp, ctx->server_name, 0);
		}
	}
	session_offer(t);
	/* The ClientHello: through the write BIO, out. */
	r = SSL_do_handshake(t->ssl);
	if (r != 1 && SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ)
		r = ssl_failure(t, r);
	else
		r = flush(t);
	if (r == 0)
		r = raw_read(t, 1);
	if (r < 0 && t->owriting) {
		/* A write is under way: the stream's close ends it, then
		 * the connection. */
		t->flags &= ~T_HANDSHAKE;
		t->flags |= T_CLOSING;
		return r;
	}
	return r < 0 ? tls_drop(t, r) : 0;
}

const char *sl_tls_why(const sl_stream *st)
{
	const sl_tls *t = tls_of(st);

	return t != NULL && t->why != NULL ? t->why : "";
}

const char *sl_tls_matched(const sl_stream *st)
{
	const sl_tls *t = tls_of(st);

	return t != NULL ? t->matched : NULL;
}

void sl_tls_peer_sha256(const sl_stream *st, char *buf, size_t len)
{
	X509 *x = SSL_get0_peer_certificate(tls_of(st)->ssl);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	buf[0] = '\0';
	if (x == NULL || !X509_digest(x, EVP_sha256(), md, &n))
		return;
	for (unsigned i = 0; i < n && 2 * i + 2 < len; i++)
		snprintf(buf + 2 * i, 3, "%02x", md[i]);
}

int sl_tls_peer_cert_info(const sl_stream *st, long *verify, int *resumed)
{
	const SSL *ssl = tls_of(st)->ssl;

	if (SSL_get0_peer_certificate(ssl) == NULL)
		return 0;
	*verify = SSL_get_verify_result(ssl);
	*resumed = SSL_session_reused(ssl);
	return 1;
}

int sl_tls_peer_cn(const sl_stream *st, char *buf, size_t len)
{
	X509 *x = SSL_get0_peer_certificate(tls_of(st)->ssl);
	const X509_NAME *subj;
	unsigned char *u = NULL;
	int i, n;

	if (x == NULL)
		return -1;
	subj = X509_get_subject_name(x);
	if ((i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1)) < 0)
		return -1;
	n = ASN1_STRING_to_UTF8(
		&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
	if (n < 0 || (size_t)n > len || memchr(u, '\0', (size_t)n) != NULL)
		n = -1;
	else
		memcpy(buf, u, (size_t)n);
	OPENSSL_free(u);
	return n;
}

const char *sl_tls_version(const sl_stream *st)
{
	return SSL_get_version(tls_of(st)->ssl);
}

int sl_tls_resumed(const sl_stream *st)
{
	return SSL_session_reused(tls_of(st)->ssl);
}

const char *sl_tls_cipher(const sl_stream *st)
{
	return SSL_get_cipher_name(tls_of(st)->ssl);
}

const char *sl_tls_alpn(const sl_stream *st, size_t *len)
{
	const unsigned char *p = NULL;
	unsigned int n = 0;

	SSL_get0_alpn_selected(tls_of(st)->ssl, &p, &n);
	*len = n;
	return n > 0 ? (const char *)p : NULL;
}

const char *sl_tls_sni(const sl_stream *st)
{
	return SSL_get_servername(tls_of(st)->ssl, TLSEXT_NAMETYPE_host_name);
}

void sl_tls_peer_subject(const sl_stream *st, char *buf, size_t len)
{
	X509 *x = SSL_get0_peer_certificate(tls_of(st)->ssl);
	BIO *b;
	int n;

	buf[0] = '\0';
	if (x == NULL || (b = BIO_new(BIO_s_mem())) == NULL)
		return;
	X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
	n = BIO_read(b, buf, (int)(len - 1));
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(b);
}

/* ---- the stream calls ------------------------------------------------------ */

int sl_tls_read_start(sl_stream *st, sl_alloc_cb alloc, sl_read_cb cb)
{
	sl_tls *t = tls_of(st);

	if (t == NULL)
		return sl_stream_read_start(st, alloc, cb);
	if (t->flags & (T_CLOSING | T_HANDSHAKE))
		return -EINVAL;
	t->alloc_cb = alloc;
	t->read_cb = cb;
	if (t->flags & (T_READING | T_ENDED))
		return 0;
	t->flags |= T_READING;
	/* Plaintext already here (or the end): from the task. */
	if (SSL_has_pending(t->ssl) || t->in_len > 0 || t->read_err != 0 ||
	    (t->flags & T_RAW_END)) {
		post(t);
		return 0;
	}
	return raw_read(t, 1);
}

int sl_tls_read_stop(sl_stream *st)
{
	sl_tls *t = tls_of(st);

	if (t == NULL)
		return sl_stream_read_stop(st);
	t->flags &= ~T_READING;
	return (t->flags & T_HANDSHAKE) ? 0 : raw_read(t, 0);
}

int sl_tls_write(sl_stream *st, sl_write_req *req, const void *buf,
		 size_t len, sl_write_cb cb)
{
	sl_tls *t = tls_of(st);

	if (t == NULL)
		return sl_stream_write(st, req, buf, len, cb);
	if (t->flags & (T_CLOSING | T_HANDSHAKE))
		return -EINVAL;
	if (t->flags & T_SHUT_WANTED)
		return -EPIPE;
	if (len > INT_MAX)
		return -EINVAL;
	sl_write_req_init(req, st, buf, len, cb);
	*t->wq_tail = req;
	t->wq_tail = &req->next;
	post(t);
	return 0;
}

ptrdiff_t sl_tls_try_write(sl_stream *st, const void *buf, size_t len,
			   unsigned flags)
{
	sl_tls *t = tls_of(st);
	int r;

	if (t == NULL)
		return sl_stream_try_write(st, buf, len, flags);
	if (t->write_err != 0)
		return t->write_err;
	if (t->flags & (T_CLOSING | T_SHUT_WANTED))
		return -EPIPE;
	if (!(t->flags & T_READY) || t->owriting || t->out_len > 0 ||
	    t->wq != NULL || t->wd != NULL)
		return -EAGAIN;
	if (len == 0)
		return 0;
	if (len > INT_MAX)
		len = INT_MAX;
	/* Taken whole: what the stream cannot take now waits in t->out,
	 * and the next try says -EAGAIN until it is out. */
	batch_begin(t);
	r = SSL_write(t->ssl, buf, (int)len);
	batch_done(t);
	if (r <= 0)
		return t->write_err = ssl_failure(t, 0);
	if ((r = flush(t)) < 0)
		return t->write_err = r;
	return (ptrdiff_t)len;
}

int sl_tls_end_follows(const sl_stream *st)
{
	return tls_of(st) != NULL ? 0 : sl_stream_end_follows(st);
}

int sl_tls_can_forward(const sl_stream *src, const sl_stream *dst)
{
	/* Bytes that need the cipher cannot move by splice(2). */
	if (tls_of(src) != NULL || tls_of(dst) != NULL)
		return 0;
	return sl_stream_can_forward(src, dst);
}

int sl_tls_shutdown(sl_stream *st, sl_shutdown_cb cb)
{
	sl_tls *t = tls_of(st);

	if (t == NULL)
		return sl_stream_shutdown(st, cb);
	if (t->flags & (T_CLOSING | T_HANDSHAKE | T_SHUT_WANTED))
		return -EINVAL;
	t->flags |= T_SHUT_WANTED;
	t->shutdown_cb = cb;
	post(t);
	return 0;
}

static void tls_close(sl_stream *st, sl_close_cb cb, int reset)
{
	sl_tls *t = tls_of(st);

	if (t == NULL) {
		if (reset)
			sl_stream_close_reset(st, cb);
		else
			sl_stream_close(st, cb);
		return;
	}
	t->flags |= T_CLOSING;
	t->close_cb = cb;
	if (reset)
		sl_stream_close_reset(st, tls_closed);
	else
		sl_stream_close(st, tls_closed);
}

void sl_tls_close(sl_stream *st, sl_close_cb cb)
{
	tls_close(st, cb, 0);
}

void sl_tls_close_reset(sl_stream *st, sl_close_cb cb)
{
	tls_close(st, cb, 1);
}

#endif /* SL_HAVE_TLS */
