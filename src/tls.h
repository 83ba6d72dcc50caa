/*
 * TLS (OpenSSL 3), written once above the stream API, so that it works
 * the same over every stream of src/net (TCP, Unix sockets, named pipes)
 * and every loop (epoll, kqueue, IOCP).
 *
 * Design: a filter with BIOs of its own.  OpenSSL never sees a
 * descriptor or a handle: the filter reads the stream with
 * sl_stream_read_start() and lends what the peer sent to the SSL's read
 * BIO; each record OpenSSL has for the peer its write BIO sends with
 * sl_stream_try_write(), and what cannot leave at once with
 * sl_stream_write().  That is how libuv-based projects and HAProxy's xprt
 * put TLS over a transport that is not a socket OpenSSL could poll, and
 * the only way that fits a completion API (IOCP owns the buffer of a read
 * in flight; OpenSSL's socket BIO would want to read the handle itself).
 * The ciphertext is copied once, from the stream's read buffer into
 * OpenSSL's record buffer; none is copied on the way out.
 *
 * The filter presents the stream calls the relay uses, with the same
 * signatures and rules (net.h): sl_tls_read_start(st, ...) on a stream
 * with TLS reads plaintext, and on any other stream is
 * sl_stream_read_start(st, ...).  So session.c relays both kinds with one
 * code path, its callbacks get the stream they know (the raw one, whose
 * data is still theirs), and nothing of OpenSSL reaches it.  The filter
 * keeps its state in the stream's layer slot (sl_stream_set_layer).
 *
 * Rules beyond net.h's: a write of plaintext is taken whole once the
 * handshake is done (OpenSSL encrypts into memory); if the ciphertext
 * cannot all leave now, the filter holds it and says -EAGAIN to the next
 * try_write, so back-pressure is what it is for a cleartext stream, with
 * at most one buffer of ciphertext per stream.  The peer's close_notify is
 * SL_EOF; an end of the stream without it is SL_TLS_ETRUNC.  A shutdown
 * sends close_notify, then shuts the stream's write side (FIN).
 *
 * Contexts (sl_tls_ctx) are made from a config's tls mapping, once per
 * route snapshot (so a reload reads every file again), shared by every
 * loop thread, and counted: each connection holds its context.
 *
 * Built only when configure found OpenSSL (SL_HAVE_TLS); without it the
 * stream calls below are the plain stream calls and nothing else exists.
 */
#ifndef SL_TLS_H
#define SL_TLS_H

#include <stddef.h>

#include "config.h"
#include "net/net.h"

/* The TLS library and its version ("OpenSSL 3.0.17 1 Jul 2025"), or
 * "none" when this sluice was built without TLS. */
const char *sl_tls_library(void);

/* Errors of a TLS stream, beside those of net.h. */
#define SL_TLS_ETRUNC (-4080)     /* the peer ended without close_notify */
#define SL_TLS_EPROTO (-4081)     /* TLS protocol error, handshake failed */
#define SL_TLS_EVERIFY (-4082)    /* the peer's certificate did not verify */
#define SL_TLS_ENOCERT (-4083)    /* the client sent no certificate */
#define SL_TLS_ENOTALLOWED (-4084) /* verified, but not in allow */

/* Text for an error of this API or of net.h. */
const char *sl_tls_strerror(int err);

#ifdef SL_HAVE_TLS

typedef struct sl_tls_ctx sl_tls_ctx;
typedef struct sl_tls sl_tls;

/*
 * A listener's context from its tls mapping, or an upstream's (ep: its
 * address, whose host is the name verified unless server_name says
 * another).  Every file is read now.  NULL with a message in err: the
 * file, and what is wrong with it in OpenSSL's words (cannot be read, not
 * a certificate, key does not match the certificate, expired, not a CA).
 */
sl_tls_ctx *sl_tls_ctx_server(const sl_tls_listen_conf *t, char *err,
			      size_t errlen);
sl_tls_ctx *sl_tls_ctx_client(const sl_tls_upstream_conf *t,
			      const sl_endpoint *ep, char *err,
			      size_t errlen);
void sl_tls_ctx_ref(sl_tls_ctx *c);
/*
 * A listener's session-ticket keys rotate now, as they do every hour: the
 * current key becomes the previous one (which still opens tickets), the
 * one before goes.  For tests; nothing else calls it.
 */
void sl_tls_ctx_rotate_tickets(sl_tls_ctx *c);
/* The context's SSL_CTX, for tests that drive OpenSSL against it. */
void *sl_tls_ctx_openssl(sl_tls_ctx *c);
void sl_tls_ctx_unref(sl_tls_ctx *c);

/*
 * Days until the context's own certificate expires (negative: it has);
 * 0 when it has none.  *file gets the certificate's file.
 */
long sl_tls_ctx_days_left(const sl_tls_ctx *c, const char **file);
/* When the context's own certificate expires, in seconds since the
 * epoch; *file gets its file (NULL, and 0 returned, when it has none). */
long long sl_tls_ctx_not_after(const sl_tls_ctx *c, const char **file);

/*
 * sluice -t: every tls mapping of cfg made into its context, which loads
 * every certificate, key and CA.  0, or -1 with the first problem in err
 * ("FILE:LINE:COL: tls: ..."); each certificate expiring within 30 days,
 * and each upstream with verify: false, is a warning through warn.
 */
int sl_tls_check(const sl_config *cfg,
		 void (*warn)(void *arg, const char *msg), void *arg,
		 char *err, size_t errlen);

/* ---- connections ------------------------------------------------------- */

/* The handshake ended: 0, or an SL_TLS_E* / net.h error. */
typedef void (*sl_tls_done_cb)(sl_stream *st, int status);

/*
 * Begin TLS on st as the server (accept) or as the client (connect, with
 * SNI and the name verified from ctx).  st must not be reading.  cb runs
 * once, later, from the loop; until then use no other call but close.
 * early: bytes of the client's already read from st (after a PROXY
 * header, in the same read), the start of its handshake.
 */
int sl_tls_accept(sl_stream *st, sl_tls_ctx *ctx, const void *early,
		  size_t early_len, sl_tls_done_cb cb);
int sl_tls_connect(sl_stream *st, sl_tls_ctx *ctx, sl_tls_done_cb cb);

/* Non-zero when st carries TLS (sl_tls_accept or sl_tls_connect). */
int sl_tls_on(const sl_stream *st);

/*
 * After the handshake: the version ("TLSv1.3"), the cipher, the name the
 * client asked for (SNI; NULL without), and the peer certificate's
 * subject ("CN=x,O=y"; "" without one) into buf.
 */
const char *sl_tls_version(const sl_stream *st);
/* OpenSSL's words for why the handshake or a read failed ("" if none). */
const char *sl_tls_why(const sl_stream *st);
const char *sl_tls_cipher(const sl_stream *st);
/* The protocol ALPN chose (*len bytes, not NUL-terminated), or NULL. */
const char *sl_tls_alpn(const sl_stream *st, size_t *len);
/* 1 when the handshake resumed a session (a ticket), else 0. */
int sl_tls_resumed(const sl_stream *st);
const char *sl_tls_sni(const sl_stream *st);
void sl_tls_peer_subject(const sl_stream *st, char *buf, size_t len);
/* The SHA-256 of the peer's certificate in hex ("" without one); len
 * at least 65. */
void sl_tls_peer_sha256(const sl_stream *st, char *buf, size_t len);
/*
 * The peer's certificate, for a PROXY v2 header: 0 when it showed none;
 * else 1 with *verify (X509_V_OK, 0, when it verified) and *resumed
 * (non-zero: it was shown in the session this one resumed, not in this
 * handshake).
 */
int sl_tls_peer_cert_info(const sl_stream *st, long *verify, int *resumed);
/*
 * The first common name of the peer certificate's subject, as UTF-8
 * bytes into buf (not NUL-terminated): its length, or -1 when there is
 * none, it is longer than len, or it holds a NUL (a name that C code
 * would read cut short).
 */
int sl_tls_peer_cn(const sl_stream *st, char *buf, size_t len);
/* The name allow admitted the client by ("cn:x", "dns:x", "uri:x", as
 * the certificate has it: the peer's text, not escaped), or NULL. */
const char *sl_tls_matched(const sl_stream *st);

/* ---- the stream calls, TLS or not (net.h says what each does) ---------- */

int sl_tls_read_start(sl_stream *st, sl_alloc_cb alloc, sl_read_cb cb);
int sl_tls_read_stop(sl_stream *st);
int sl_tls_write(sl_stream *st, sl_write_req *req, const void *buf,
		 size_t len, sl_write_cb cb);
ptrdiff_t sl_tls_try_write(sl_stream *st, const void *buf, size_t len,
			   unsigned flags);
int sl_tls_end_follows(const sl_stream *st);
int sl_tls_can_forward(const sl_stream *src, const sl_stream *dst);
int sl_tls_shutdown(sl_stream *st, sl_shutdown_cb cb);
void sl_tls_close(sl_stream *st, sl_close_cb cb);
void sl_tls_close_reset(sl_stream *st, sl_close_cb cb);

#else /* !SL_HAVE_TLS: the plain stream calls */

static inline int sl_tls_on(const sl_stream *st)
{
	(void)st;
	return 0;
}
#define sl_tls_read_start sl_stream_read_start
#define sl_tls_read_stop sl_stream_read_stop
#define sl_tls_write sl_stream_write
#define sl_tls_try_write sl_stream_try_write
#define sl_tls_end_follows sl_stream_end_follows
#define sl_tls_can_forward sl_stream_can_forward
#define sl_tls_shutdown sl_stream_shutdown
#define sl_tls_close sl_stream_close
#define sl_tls_close_reset sl_stream_close_reset

#endif
#endif
